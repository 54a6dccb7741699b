"""playbooks/site.yml on the demo's hosts: cold converge, then the idempotent re-run.

Destroys and re-creates the `platform` Molecule scenario (scheduler, 2 workers, gateway,
identity and moto peers on the host), times `molecule converge` twice and reads each run's
PLAY RECAP. Prints JSON:
  cold_s, rerun_s, changed per run (total and per host), and the re-run target (0 changed
  in <= 60 s) met or not. Leaves the scenario up (use `make demo-down`) unless --destroy.

usage: .venv/bin/python bench/site_converge.py [--keep-cold] [--destroy]
  --keep-cold  reuse running containers: time the re-run only
Each converge's whole output is kept in .cache/platform/site-converge-{cold,rerun}.log.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = "/tmp/dataplatform-molecule.lock"
RECAP = re.compile(
    r"^\W*(?P<host>[\w.-]+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=\d+\s+failed=(?P<failed>\d+)"
)


LOGS = ROOT / ".cache" / "platform"


def molecule(*args: str, log: str | None = None) -> tuple[float, str]:
    env = dict(os.environ, PATH=f"{ROOT / '.venv/bin'}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    env.setdefault("DP_WHEELHOUSE", str(ROOT / ".cache/wheelhouse"))
    start = time.monotonic()
    proc = subprocess.run(
        ["molecule", *args, "-s", "platform"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - start
    if log:  # the whole output (profile_tasks' slowest tasks included) for the next look
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"site-converge-{log}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"molecule {' '.join(args)} failed")
    return took, proc.stdout + proc.stderr


def recap(output: str) -> dict:
    hosts = {}
    for line in output.splitlines():
        m = RECAP.match(line)
        if m:
            hosts[m["host"]] = {"ok": int(m["ok"]), "changed": int(m["changed"]), "failed": int(m["failed"])}
    return {"changed": sum(h["changed"] for h in hosts.values()), "hosts": hosts}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--keep-cold", action="store_true")
    p.add_argument("--destroy", action="store_true")
    args = p.parse_args()
    result: dict = {"bench": "site_converge", "hosts": 4, "cpus": os.cpu_count()}
    # One lock for the whole run: no other scenario starts between the timed steps.
    with open(LOCK, "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not args.keep_cold:
            molecule("destroy")
            result["create_s"] = round(molecule("create")[0], 1)
            result["prepare_s"] = round(molecule("prepare")[0], 1)
            cold, out = molecule("converge", log="cold")
            result["cold_s"] = round(cold, 1)
            result["cold"] = recap(out)
        rerun, out = molecule("converge", log="rerun")
        result["rerun_s"] = round(rerun, 1)
        result["rerun"] = recap(out)
        result["target_rerun"] = "0 changed in <= 60 s"
        result["target_met"] = result["rerun"]["changed"] == 0 and rerun <= 60
        if args.destroy:
            molecule("destroy")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
