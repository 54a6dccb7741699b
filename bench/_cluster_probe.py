"""Runs inside a cluster container (the Dask venv) for bench/cluster_bench.py; prints JSON.

usage: python _cluster_probe.py latency ADDRESS BUNDLE|- CLIENTS ROUNDS
       python _cluster_probe.py throughput ADDRESS BUNDLE|- TASKS
       python _cluster_probe.py holders ADDRESS BUNDLE VICTIM
A BUNDLE of '-' connects without TLS (the stock, plain-TCP cluster).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from distributed import Client
from distributed.security import Security


def inc(x: int) -> int:
    return x + 1


def security(bundle: str):
    if bundle == "-":
        return None
    return Security(
        tls_ca_file=f"{bundle}/ca.crt",
        tls_client_cert=f"{bundle}/client.crt",
        tls_client_key=f"{bundle}/client.key",
        require_encryption=True,
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_client(
    address: str, bundle: str, rounds: int, ready: asyncio.Queue, start: asyncio.Event, out: list[float]
) -> None:
    async with Client(address, security=security(bundle), asynchronous=True, timeout=60) as client:
        await client.submit(inc, -1, pure=False)  # connected and warm
        ready.put_nowait(True)
        await start.wait()
        for i in range(rounds):
            t0 = time.perf_counter()
            await client.submit(inc, i, pure=False)
            out.append(time.perf_counter() - t0)


async def latency(address: str, bundle: str, clients: int, rounds: int) -> dict:
    start = asyncio.Event()
    ready: asyncio.Queue = asyncio.Queue()
    samples: list[float] = []
    tasks = [asyncio.create_task(one_client(address, bundle, rounds, ready, start, samples)) for _n in range(clients)]
    for _n in range(clients):  # every client connected before the clock starts
        await ready.get()
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "rounds": rounds,
        "samples": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p95_ms": round(pct(samples, 0.95) * 1000, 2),
        "max_ms": round(max(samples) * 1000, 2),
        "wall_s": round(wall, 2),
    }


def throughput(address: str, bundle: str, tasks: int) -> dict:
    with Client(address, security=security(bundle), timeout=60) as client:
        client.gather(client.map(inc, range(200), pure=False))  # warm up
        t0 = time.perf_counter()
        futures = client.map(inc, range(tasks), pure=False)
        total = sum(client.gather(futures))
        wall = time.perf_counter() - t0
        assert total == sum(range(1, tasks + 1))
        return {"tasks": tasks, "seconds": round(wall, 3), "tasks_per_s": round(tasks / wall, 1)}


def holders(address: str, bundle: str, victim: str, dataset: str = "retire_test") -> dict:
    """After VICTIM has left the scheduler: how many of DATASET's keys still have a holder.

    Counts from who_has rather than gathering: gathering a scattered key whose only copy died
    waits for it forever.
    """
    with Client(address, security=security(bundle), timeout=30) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            names = {str(ws["name"]) for ws in client.scheduler_info(n_workers=-1)["workers"].values()}
            if victim not in names:
                break
            time.sleep(0.2)
        futures = client.get_dataset(dataset)
        who = client.who_has(futures)
        kept = sum(1 for ws in who.values() if ws)
        client.unpublish_dataset(dataset)
        return {"keys": len(futures), "retrievable": kept, "lost": len(futures) - kept}


if __name__ == "__main__":
    action, address, bundle, *rest = sys.argv[1:]
    if action == "latency":
        result = asyncio.run(latency(address, bundle, int(rest[0]), int(rest[1])))
    elif action == "holders":
        result = holders(address, bundle, rest[0])
    else:
        result = throughput(address, bundle, int(rest[0]))
    print(json.dumps(result))
