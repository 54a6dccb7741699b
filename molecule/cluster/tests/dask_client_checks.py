"""Client-side checks run inside a test container with the cluster's client bundle.

Called by test_cluster.py through `docker exec`; prints one JSON document.
Usage: python dask_client_checks.py ACTION SCHEDULER_ADDRESS BUNDLE_DIR [args]
"""

from __future__ import annotations

import json
import sys
import time

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, get_task_stream
from distributed.security import Security


def security(bundle: str, with_cert: bool = True) -> Security:
    if with_cert:
        return Security(
            tls_ca_file=f"{bundle}/ca.crt",
            tls_client_cert=f"{bundle}/client.crt",
            tls_client_key=f"{bundle}/client.key",
            require_encryption=True,
        )
    return Security(tls_ca_file=f"{bundle}/ca.crt", require_encryption=True)


def worker_names(client: Client) -> dict[str, str]:
    return {addr: str(ws["name"]) for addr, ws in client.scheduler_info(n_workers=-1)["workers"].items()}


def compute(address: str, bundle: str) -> dict:
    with Client(address, security=security(bundle), timeout=30) as client:
        names = worker_names(client)
        with get_task_stream(client) as ts:
            x = da.arange(4_000_000, chunks=100_000)
            total = int((x * 2).sum().compute())
            pdf = pd.DataFrame({"k": np.arange(200_000) % 97, "v": np.arange(200_000)})
            ddf = dd.from_pandas(pdf, npartitions=16)
            with dask.config.set({"dataframe.shuffle.method": "tasks"}):
                shuffled = ddf.shuffle(on="k", npartitions=8)
                grouped = shuffled.groupby("k").v.sum().compute().sort_index()
        expected_groups = pdf.groupby("k").v.sum().sort_index()
        used = sorted({names.get(t["worker"], t["worker"]) for t in ts.data})
        return {
            "array_sum": total,
            "array_expected": int(np.arange(4_000_000).sum() * 2),
            "shuffle_ok": bool((grouped.values == expected_groups.values).all()),
            "shuffle_groups": len(grouped),
            "workers_used": used,
            "workers": sorted(names.values()),
        }


def nocert(address: str, bundle: str) -> dict:
    start = time.monotonic()
    try:
        with Client(address, security=security(bundle, with_cert=False), timeout=10) as client:
            return {"refused": False, "workers": len(client.scheduler_info()["workers"])}
    except Exception as exc:  # any failure to connect is the expected refusal
        return {"refused": True, "error": f"{type(exc).__name__}: {exc}"[:300], "seconds": time.monotonic() - start}


def wait_workers(address: str, bundle: str, names: str, since: str, timeout: str) -> dict:
    want = set(names.split(","))
    deadline = float(since) + float(timeout)
    last: list[str] = []
    while time.time() < deadline + 5:
        try:
            with Client(address, security=security(bundle), timeout=5) as client:
                while time.time() < deadline + 5:
                    last = sorted(worker_names(client).values())
                    if want <= set(last):
                        return {"ok": True, "elapsed": time.time() - float(since), "workers": last}
                    time.sleep(0.2)
        except Exception:  # the scheduler may be restarting
            time.sleep(0.5)
    return {"ok": False, "elapsed": time.time() - float(since), "workers": last}


def persist(address: str, bundle: str, victim: str) -> dict:
    """Scatter data that cannot be recomputed, spread over the workers; publish it."""
    with Client(address, security=security(bundle), timeout=30) as client:
        names = worker_names(client)
        addrs = sorted(names)
        futures = []
        for i in range(24):
            target = addrs[i % len(addrs)]
            futures.extend(client.scatter([np.full(50_000, i, dtype="int64")], workers=[target]))
        client.wait_for_workers(len(addrs))
        for ds in client.list_datasets():
            client.unpublish_dataset(ds)
        client.publish_dataset(retire_test=futures)
        who = client.who_has(futures)
        on_victim = sum(1 for ws in who.values() if any(names.get(w) == victim for w in ws))
        return {"keys": len(futures), "on_victim": on_victim, "expected_sum": int(sum(i * 50_000 for i in range(24)))}


def check(address: str, bundle: str, victim: str) -> dict:
    with Client(address, security=security(bundle), timeout=30) as client:
        names = worker_names(client)
        futures = client.get_dataset("retire_test")
        values = client.gather(futures, errors="skip")
        who = client.who_has(futures)
        on_victim = sum(1 for ws in who.values() if any(names.get(w) == victim for w in ws))
        client.unpublish_dataset("retire_test")
        return {
            "retrieved": len(values),
            "sum": int(sum(int(v.sum()) for v in values)),
            "on_victim": on_victim,
            "workers": sorted(names.values()),
        }


ACTIONS = {"compute": compute, "nocert": nocert, "wait-workers": wait_workers, "persist": persist, "check": check}

if __name__ == "__main__":
    action, *args = sys.argv[1:]
    print(json.dumps(ACTIONS[action](*args)))
