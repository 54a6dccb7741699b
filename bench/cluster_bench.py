"""Benchmarks of the fixed cluster against stock Dask on the same containers; prints JSON.

Needs the `cluster` Molecule scenario converged (`make bench` does it): 1 scheduler and
2 workers running our roles (TLS, mutual certificates, hardened units). The stock cluster is
plain `dask scheduler` / `dask worker` from the same virtualenv with Dask's default config
(plain TCP, no certificates), started beside ours on other ports for the run and stopped after.

Measures
- submit -> result latency with N concurrent clients (default 30), p50/p95/max, ours/stock;
- scheduler throughput: many tiny tasks, tasks/s, ours/stock;
- a baked worker: `systemctl start dask-worker` -> "Registered to" the scheduler, seconds
  (the address read from /etc/dask/scheduler-address as user data would leave it).

usage: .venv/bin/python bench/cluster_bench.py [--clients 30] [--rounds 20] [--tasks 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEDULER = "dask-scheduler"
WORKERS = ["dask-worker1", "dask-worker2"]
VENV = "/opt/dask/current"
BUNDLE = "/root/dask-bench"
STOCK_PORT = 9786
STOCK_ENV = "env -u DASK_CONFIG DASK_ROOT_CONFIG=/nonexistent"


def sh(host: str, cmd: str, check: bool = True) -> str:
    out = subprocess.run(["docker", "exec", host, "sh", "-c", cmd], capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"{host}: {cmd}: {out.stderr.strip()[-500:]}")
    return out.stdout.strip()


def ip_of(host: str) -> str:
    return sh(host, "hostname -I | awk '{print $1}'")


def ephemeral_ca_dir() -> Path:
    found = sorted(Path.home().glob(".ansible/tmp/molecule.*.cluster/dask-ca/clients/client"))
    if not found:
        raise SystemExit("no converged `cluster` scenario: run `make bench` (or molecule converge -s cluster)")
    return found[0]


def setup_client() -> None:
    bundle = ephemeral_ca_dir()
    sh(SCHEDULER, f"mkdir -p {BUNDLE}")
    for name in ("ca.crt", "client.crt", "client.key"):
        subprocess.run(["docker", "cp", str(bundle / name), f"{SCHEDULER}:{BUNDLE}/{name}"], check=True)
    subprocess.run(["docker", "cp", str(HERE / "_cluster_probe.py"), f"{SCHEDULER}:{BUNDLE}/probe.py"], check=True)


def probe(*args: str) -> dict:
    out = sh(SCHEDULER, f"cd /tmp && {STOCK_ENV} {VENV}/bin/python {BUNDLE}/probe.py " + " ".join(args))
    return json.loads(out.splitlines()[-1])


def start_stock(sched_ip: str) -> None:
    sh(
        SCHEDULER,
        f"cd /tmp && {STOCK_ENV} nohup {VENV}/bin/dask scheduler --host {sched_ip} --port {STOCK_PORT} "
        f"--dashboard-address :9787 >/tmp/stock-scheduler.log 2>&1 &",
    )
    time.sleep(3)
    for w in WORKERS:
        sh(
            w,
            f"cd /tmp && {STOCK_ENV} nohup {VENV}/bin/dask worker tcp://{sched_ip}:{STOCK_PORT} --nthreads 2 "
            f"--memory-limit 3GB --name stock-{w} --dashboard-address :9790 >/tmp/stock-worker.log 2>&1 &",
        )
    time.sleep(6)


def stop_stock() -> None:
    for host in [SCHEDULER, *WORKERS]:
        sh(host, f"pkill -f 'dask (scheduler|worker).*{STOCK_PORT}' || true", check=False)


def baked_join() -> dict:
    """A worker whose only clue is /etc/dask/scheduler-address: start -> registered."""
    w = WORKERS[1]
    sh(w, "systemctl stop dask-worker")
    sh(w, "test -s /etc/dask/scheduler-address")
    t0 = time.time()
    sh(w, "systemctl start dask-worker")
    deadline = t0 + 60
    while time.time() < deadline:
        log = sh(w, f"journalctl -u dask-worker -o short-unix --since @{int(t0)} --no-pager", check=False)
        for line in log.splitlines():
            if "Registered to:" in line:
                return {"seconds": round(float(line.split()[0]) - t0, 2)}
        time.sleep(0.2)
    return {"seconds": None, "error": "worker did not register within 60 s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()

    setup_client()
    sched_ip = ip_of(SCHEDULER)
    ours = f"tls://{sched_ip}:8786"
    stock = f"tcp://{sched_ip}:{STOCK_PORT}"
    result: dict = {"benchmark": "cluster", "clients": args.clients, "host_cpus": os.cpu_count()}
    result["ours_latency"] = probe("latency", ours, BUNDLE, str(args.clients), str(args.rounds))
    result["ours_throughput"] = probe("throughput", ours, BUNDLE, str(args.tasks))
    stop_stock()
    start_stock(sched_ip)
    try:
        result["stock_latency"] = probe("latency", stock, "-", str(args.clients), str(args.rounds))
        result["stock_throughput"] = probe("throughput", stock, "-", str(args.tasks))
    finally:
        stop_stock()
    result["submit_p95_ratio"] = round(result["ours_latency"]["p95_ms"] / result["stock_latency"]["p95_ms"], 2)
    result["throughput_ratio"] = round(
        result["ours_throughput"]["tasks_per_s"] / result["stock_throughput"]["tasks_per_s"], 2
    )
    result["baked_worker_join"] = baked_join()
    result["targets"] = {
        "submit_p95_ms_max": 50,
        "submit_p95_ratio_max": 1.2,
        "throughput_ratio_min": 0.95,
        "baked_join_s_max": 5,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
