"""Failure drills on the fixed cluster; prints JSON (summarised in docs/reliability.md).

Needs the `cluster` Molecule scenario converged (scripts/bench.sh does it). Each drill
injects a failure into the running containers and measures recovery with a real client:
- kill -9 of the scheduler: time until every worker is registered again;
- kill -9 of each worker: time until it is registered again;
- a worker stopped with keys on it, gracefully (systemctl stop: retirement) and hard (kill -9,
  with systemd's restart masked for the drill): keys still retrievable vs lost.

usage: .venv/bin/python bench/drills.py
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "molecule/cluster/tests/dask_client_checks.py"
PROBE = ROOT / "bench/_cluster_probe.py"
SCHEDULER = "dask-scheduler"
WORKERS = ["dask-worker1", "dask-worker2"]
BUNDLE = "/root/dask-drills"
PY = "env -u DASK_CONFIG DASK_ROOT_CONFIG=/nonexistent /opt/dask/current/bin/python"


def sh(host: str, cmd: str, check: bool = True) -> str:
    out = subprocess.run(["docker", "exec", host, "sh", "-c", cmd], capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"{host}: {cmd}: {out.stderr.strip()[-500:]}")
    return out.stdout.strip()


def client(*args: str, script: str = "checks.py") -> dict:
    out = sh(SCHEDULER, f"cd /tmp && timeout 120 {PY} {BUNDLE}/{script} " + " ".join(args))
    return json.loads(out.splitlines()[-1])


def setup() -> str:
    found = sorted(Path.home().glob(".ansible/tmp/molecule.*.cluster/dask-ca/clients/client"))
    if not found:
        raise SystemExit("no converged `cluster` scenario: molecule converge -s cluster first")
    sh(SCHEDULER, f"mkdir -p {BUNDLE}")
    for name in ("ca.crt", "client.crt", "client.key"):
        subprocess.run(["docker", "cp", str(found[0] / name), f"{SCHEDULER}:{BUNDLE}/{name}"], check=True)
    subprocess.run(["docker", "cp", str(CHECKS), f"{SCHEDULER}:{BUNDLE}/checks.py"], check=True)
    subprocess.run(["docker", "cp", str(PROBE), f"{SCHEDULER}:{BUNDLE}/probe.py"], check=True)
    ip = sh(SCHEDULER, "hostname -I | awk '{print $1}'")
    return f"tls://{ip}:8786"


def wait_all(address: str, since: float, timeout: float = 60) -> dict:
    return client("wait-workers", address, BUNDLE, ",".join(WORKERS), str(since), str(timeout))


def kill9(host: str, unit: str) -> float:
    since = time.time()
    sh(host, f"kill -9 $(systemctl show -p MainPID --value {unit})")
    return since


def stop_with_keys(address: str, victim: str, hard: bool) -> dict:
    before = client("persist", address, BUNDLE, victim)
    if hard:
        # keep systemd from restarting it during the count, then kill every process of the unit
        sh(victim, "systemctl kill -s KILL dask-worker; systemctl stop dask-worker", check=False)
    else:
        sh(victim, "systemctl stop dask-worker")
    after = client("holders", address, BUNDLE, victim, script="probe.py")
    sh(victim, "systemctl start dask-worker")
    wait_all(address, time.time())
    return {
        "keys": before["keys"],
        "keys_on_stopped_worker": before["on_victim"],
        "retrievable_after": after["retrievable"],
        "lost": after["lost"],
    }


def main() -> None:
    address = setup()
    assert wait_all(address, time.time())["ok"], "cluster not healthy before the drills"
    drills: dict = {}
    drills["kill9_scheduler"] = wait_all(address, kill9(SCHEDULER, "dask-scheduler"))
    for w in WORKERS:
        drills[f"kill9_{w}"] = wait_all(address, kill9(w, "dask-worker"))
    drills["stop_graceful"] = stop_with_keys(address, WORKERS[0], hard=False)
    drills["stop_hard_kill"] = stop_with_keys(address, WORKERS[0], hard=True)
    summary = {name: round(d["elapsed"], 2) if "elapsed" in d else d for name, d in drills.items() if d.get("ok", True)}
    print(json.dumps({"drills": drills, "recovery_seconds": summary}, indent=2))


if __name__ == "__main__":
    main()
