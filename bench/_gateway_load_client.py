"""N users' load on the gateway, run INSIDE the gateway container by bench/gateway_soak.py.

Reads its settings and the users' passwords as one JSON object on stdin; prints one JSON
object (raw samples; the driver computes the statistics). Uses the container's Python
(/opt/dask/current) and gateway.yaml (the address, proxy address and TLS of a client host).

Each user: log in (LDAP password), new_cluster, scale(1), one client; then until the end of the
run, submit a real task (a small sum computed on the user's worker, checked here), a think
time, and every `api_every` seconds a gateway API call (the user's cluster report). Churn
users shut their cluster down and make a new one every `churn_every` seconds.

Retry policy (the same for a task and an API call): a request that raises, times out
(`attempt_timeout`) or returns a wrong answer is tried again after 0.5, 1, 2, 4, 5, 5 ... s;
it FAILS when it has no right answer `retry_deadline` seconds after its first attempt. A
Dask client the library closed (it gives up reconnecting after distributed's connect
timeout) is replaced by a new one from the same cluster as part of the retry.

Optional `restart_at`: `systemctl restart dask-gateway` that many seconds into the run; the
time until /api/health answers again is measured from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import ssl
import subprocess
import sys
import time
import urllib.request

from dask_gateway import BasicAuth, Gateway
from dask_gateway.client import ClusterStatus

T0 = time.monotonic()
HEALTH = "https://platform-gateway.dataplatform.test:8000/api/health"


def now() -> float:
    return round(time.monotonic() - T0, 3)


def work(seed: int) -> int:
    return sum((seed * 31 + i) % 97 for i in range(20_000))


EXPECTED = {s: work(s) for s in range(50)}


class Failed(Exception):
    pass


async def retried(cfg: dict, what: str, attempt, check=None) -> tuple[object, int, list[str], float]:
    """(result, attempts, errors, start of the attempt that succeeded); Failed past the deadline."""
    first = time.monotonic()
    errors: list[str] = []
    delay = 0.5
    n = 0
    while True:
        n += 1
        started = now()
        try:
            result = await asyncio.wait_for(attempt(), cfg["attempt_timeout"])
            if check is None or check(result):
                return result, n, errors, started
            errors.append(f"{what}: wrong answer {result!r}")
        except Exception as exc:  # every error is counted, with its type
            errors.append(f"{what}: {type(exc).__name__}: {str(exc)[:160]}")
        if time.monotonic() - first + delay > cfg["retry_deadline"]:
            raise Failed(errors)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


class User:
    def __init__(self, cfg: dict, index: int, name: str, password: str):
        self.cfg, self.index, self.name, self.password = cfg, index, name, password
        self.gateway = None
        self.cluster = None
        self.client = None
        self.clusters: list[dict] = []
        self.samples: list[list] = []  # [start, latency_s, attempts, ok, start of the successful attempt]
        self.api: list[list] = []
        self.failures: list[dict] = []
        self.client_replaced = 0
        self.final: dict = {}

    async def new_client(self):
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        self.client = await self.cluster.get_client(set_as_default=False)
        await self.client.wait_for_workers(1, timeout=self.cfg["attempt_timeout"])

    async def start_cluster(self):
        t = now()

        async def make():
            return await self.gateway.new_cluster(shutdown_on_close=False)

        self.cluster, _attempts, errors, _ok_start = await retried(self.cfg, "new_cluster", make)
        await retried(self.cfg, "scale", lambda: self.cluster.scale(1))
        self.client = None
        await retried(self.cfg, "client", self.new_client)
        self.clusters.append({"name": self.cluster.name, "started": t, "ready_s": round(now() - t, 3)})
        if errors:
            self.failures.append({"at": t, "request": "new_cluster", "retried": errors})

    async def stop_cluster(self):
        with contextlib.suppress(Exception):
            await self.client.close()
        await retried(self.cfg, "stop_cluster", lambda: self.gateway.stop_cluster(self.cluster.name))

    async def submit(self, seed: int):
        async def attempt():
            if self.client.status in ("closed", "closing"):
                self.client_replaced += 1
                await self.new_client()
            return await self.client.submit(work, seed, pure=False)

        start = now()
        try:
            _res, attempts, errors, ok_start = await retried(self.cfg, "task", attempt, lambda r: r == EXPECTED[seed])
            self.samples.append([start, round(now() - start, 4), attempts, True, ok_start])
            if errors:
                self.failures.append({"at": start, "request": "task", "retried": errors[:3], "attempts": attempts})
        except Failed as exc:
            self.samples.append([start, round(now() - start, 4), None, False, None])
            self.failures.append({"at": start, "request": "task", "failed": exc.args[0][-3:]})

    async def api_call(self):
        start = now()
        try:
            _res, attempts, errors, ok_start = await retried(
                self.cfg, "api", lambda: self.gateway.get_cluster(self.cluster.name)
            )
            self.api.append([start, round(now() - start, 4), attempts, True, ok_start])
            if errors:
                self.failures.append({"at": start, "request": "api", "retried": errors[:3], "attempts": attempts})
        except Failed as exc:
            self.api.append([start, round(now() - start, 4), None, False, None])
            self.failures.append({"at": start, "request": "api", "failed": exc.args[0][-3:]})

    async def run(self, prepared: asyncio.Event, ready: asyncio.Event, clock: dict):
        cfg = self.cfg
        rnd = random.Random(self.index)
        async with Gateway(auth=BasicAuth(self.name, self.password), asynchronous=True) as gw:
            self.gateway = gw
            # Logins spread over the ramp so the start-up is not one stampede.
            await asyncio.sleep(cfg["ramp_s"] * self.index / cfg["n_users"])
            try:
                await self.start_cluster()
            except Failed as exc:
                self.failures.append({"at": now(), "request": "new_cluster", "failed": exc.args[0][-3:]})
                return
            finally:
                prepared.set()
            await ready.wait()
            end = clock["end"]
            churn = self.index < cfg["churn_users"]
            born = time.monotonic() + (cfg["churn_every"] * self.index / max(cfg["churn_users"], 1))
            next_api = time.monotonic() + rnd.uniform(0, cfg["api_every"])
            seed = self.index
            while time.monotonic() < end:
                await self.submit(seed % 50)
                seed += 1
                if time.monotonic() >= next_api:
                    await self.api_call()
                    next_api += cfg["api_every"]
                if churn and time.monotonic() - born >= cfg["churn_every"]:
                    try:
                        await self.stop_cluster()
                        await self.start_cluster()
                    except Failed as exc:
                        self.failures.append({"at": now(), "request": "churn", "failed": exc.args[0][-3:]})
                        return
                    born = time.monotonic()
                await asyncio.sleep(cfg["think_s"] * rnd.uniform(0.5, 1.5))
            await self.finish()

    async def finish(self):
        """Is the cluster this user holds still there, running, and computing?"""
        try:
            listed = await self.gateway.list_clusters()
            mine = {c.name: c.status for c in listed}
            status = mine.get(self.cluster.name)
            result, _attempts, _errors, _ok_start = await retried(
                self.cfg, "final task", lambda: self.client.submit(work, 7, pure=False), lambda r: r == EXPECTED[7]
            )
            self.final = {
                "cluster": self.cluster.name,
                "listed": status is not None,
                "running": status == ClusterStatus.RUNNING,
                "computes": result == EXPECTED[7],
            }
        except Exception as exc:
            self.final = {"cluster": self.cluster.name, "error": f"{type(exc).__name__}: {exc}"[:300]}
        with contextlib.suppress(Exception):
            await self.client.close()
        with contextlib.suppress(Exception):
            for c in await self.gateway.list_clusters():
                await self.gateway.stop_cluster(c.name)


def gateway_processes() -> dict:
    """RSS (MiB) and CPU seconds of dask-gateway-server and its direct children (proxy, launcher)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = subprocess.run(
        ["systemctl", "show", "-p", "MainPID", "--value", "dask-gateway"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = {"main_pid": main, "processes": []}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if pid == main or fields[1] == main:  # the server, its proxy and its launcher
            out["processes"].append(
                {
                    "pid": pid,
                    "comm": comm,
                    "rss_mib": round(rss / 1024, 1),
                    "cpu_s": round((int(fields[11]) + int(fields[12])) / tick, 2),
                }
            )
    return out


def host_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine (the containers share its /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(v[:8])
    return (total - v[3] - v[4]) / tick, total / tick


async def sampler(samples: list, period: float, end: float):
    while True:
        busy, total = host_cpu()
        samples.append({"at": now(), "gateway": gateway_processes(), "host_busy_s": busy, "host_total_s": total})
        if time.monotonic() >= end:
            return
        await asyncio.sleep(min(period, max(0.0, end - time.monotonic())))


def health_ok() -> bool:
    try:
        ctx = ssl.create_default_context()
        with urllib.request.urlopen(HEALTH, timeout=2, context=ctx) as r:
            return r.status == 200
    except OSError:
        return False


async def restarter(at: float, out: dict):
    await asyncio.sleep(max(0.0, at - (time.monotonic() - T0)))
    before = gateway_processes()["main_pid"]
    out["restart_at"] = now()
    proc = await asyncio.create_subprocess_exec("systemctl", "restart", "dask-gateway")
    await proc.wait()
    out["restart_returned_at"] = now()
    while not await asyncio.to_thread(health_ok):
        await asyncio.sleep(0.1)
    out["health_back_at"] = now()
    out["main_pid_before_after"] = [before, gateway_processes()["main_pid"]]


async def main() -> None:
    cfg = json.loads(sys.stdin.read())
    creds = cfg.pop("users")
    cfg["n_users"] = len(creds)
    users = [User(cfg, i, u, p) for i, (u, p) in enumerate(creds)]
    prepared = [asyncio.Event() for _user in users]
    ready = asyncio.Event()
    clock: dict = {}
    tasks = [asyncio.ensure_future(u.run(prepared[u.index], ready, clock)) for u in users]
    # Every user holds a computing cluster (or has failed to get one) before the load starts.
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in prepared)), cfg["setup_timeout"])
    out: dict = {"setup_s": now(), "users_ready": sum(1 for u in users if u.clusters)}
    start = time.monotonic()
    clock["end"] = start + cfg["duration_s"]
    out["load_start"] = now()
    ready.set()
    samples: list = []
    side = [asyncio.ensure_future(sampler(samples, cfg["sample_every"], clock["end"]))]
    restart: dict = {}
    if cfg.get("restart_at") is not None:
        side.append(asyncio.ensure_future(restarter(start - T0 + cfg["restart_at"], restart)))
    errors = [r for r in await asyncio.gather(*tasks, *side, return_exceptions=True) if isinstance(r, BaseException)]
    out["load_end"] = now()
    out["restart"] = restart
    out["gateway_samples"] = samples
    out["crashed"] = [f"{type(e).__name__}: {e}"[:300] for e in errors]
    out["users"] = [
        {
            "user": u.name,
            "clusters": u.clusters,
            "samples": u.samples,
            "api": u.api,
            "failures": u.failures,
            "client_replaced": u.client_replaced,
            "final": u.final,
        }
        for u in users
    ]
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
