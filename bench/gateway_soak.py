"""The gateway under 30 users' load on the `platform` scenario (make demo); prints JSON.

Makes N throw-away FreeIPA users in the identity peer (loadNN in data_engineers, random
passwords never printed, removed afterwards), then runs bench/_gateway_load_client.py in the
gateway container: each user logs in with the password, holds a 1-worker cluster and keeps
submitting real tasks (checked) with a think time, plus a gateway API call every few seconds.
The retry policy is in that file's docstring: a request FAILS when it has no right answer
`--retry-deadline` seconds (default 60) after its first attempt.

  restart  `systemctl restart dask-gateway` in the middle of the load: requests failed beyond
           the retries, retried ones, clusters lost (a user's cluster not listed, not running
           or not computing afterwards), time until the API and every user compute again.
  soak     `--duration` seconds (default 600) of load with cluster churn (`--churn-users` users
           replace their cluster every `--churn-every` s): failed submissions with their errors,
           submit latency p50/p95 per `--window` s, gateway RSS/CPU at the start and the end.

The client runs on the gateway host itself, sharing its cores with the gateway, the 30 users'
clusters and the proxy: read `host_busy` (the machine's busy fraction during the load).

usage: .venv/bin/python -m bench.gateway_soak restart|soak [--users 30] [--duration S] ...
       (after `make demo` or `molecule converge -s platform`; scripts/bench-gateway.sh runs
       both under the Molecule lock and saves the JSON in bench/results/)
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench._platform_gateway import HOST, PY, bench_users, put
from bench.gateway_latency import pct

HERE = Path(__file__).resolve().parent
CLIENT = "/usr/local/share/gateway_load_client.py"


def stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 4),
        "p95": round(pct(values, 0.95), 4),
        "max": round(max(values), 4),
    }


def requests(users: list[dict], kind: str) -> dict:
    rows = [r for u in users for r in u[kind]]
    ok = [r for r in rows if r[3]]
    return {
        "total": len(rows),
        "failed_beyond_retries": len(rows) - len(ok),
        "retried_then_ok": sum(1 for r in ok if r[2] > 1),
        "attempts": sum(r[2] for r in ok),
        "latency_s": stats([r[1] for r in ok]),
    }


def windows(users: list[dict], start: float, end: float, width: float) -> list[dict]:
    out = []
    t = start
    while t < end - 1e-6:
        rows = [r for u in users for r in u["samples"] if t <= r[0] < t + width]
        out.append(
            {
                "from_s": round(t - start, 1),
                "to_s": round(min(t + width, end) - start, 1),
                "failed": sum(1 for r in rows if not r[3]),
                **stats([r[1] for r in rows if r[3]]),
            }
        )
        t += width
    return out


def gateway_usage(samples: list[dict]) -> dict:
    """The gateway server's, proxy's and launcher's RSS and CPU at the first and last sample."""

    def parts(sample: dict) -> dict:
        main = sample["gateway"]["main_pid"]
        named = {}
        for p in sample["gateway"]["processes"]:
            if p["pid"] == main:
                role = "server"
            elif p["comm"].startswith("dask-gateway-p"):  # comm is cut at 15 characters
                role = "proxy"
            else:
                role = "launcher" if p["comm"].startswith("python") else p["comm"]
            named[role] = {"rss_mib": p["rss_mib"], "cpu_s": p["cpu_s"], "pid": p["pid"]}
        return named

    if len(samples) < 2:
        return {}
    first, last = samples[0], samples[-1]
    a, b = parts(first), parts(last)
    wall = last["at"] - first["at"]
    out = {"window_s": round(wall, 1), "start": a, "end": b, "cpu_core_fraction": {}}
    for role in b:
        if role in a and a[role]["pid"] == b[role]["pid"]:
            out["cpu_core_fraction"][role] = round((b[role]["cpu_s"] - a[role]["cpu_s"]) / wall, 3)
            out.setdefault("rss_growth_mib", {})[role] = round(b[role]["rss_mib"] - a[role]["rss_mib"], 1)
    busy = last["host_busy_s"] - first["host_busy_s"]
    total = last["host_total_s"] - first["host_total_s"]
    out["host_busy"] = round(busy / total, 3) if total else None
    out["rss_mib_over_time"] = [
        {"at_s": round(s["at"] - first["at"], 1), **{k: v["rss_mib"] for k, v in parts(s).items()}} for s in samples
    ]
    return out


def failures(users: list[dict], limit: int = 20) -> dict:
    failed = [dict(f, user=u["user"]) for u in users for f in u["failures"] if "failed" in f]
    retried = [e for u in users for f in u["failures"] if "retried" in f for e in f["retried"]]
    kinds = collections.Counter(e.split(":")[0] + ":" + e.split(":")[1] for e in retried if e.count(":") >= 1)
    return {"failed": failed[:limit], "failed_count": len(failed), "retried_errors_by_kind": dict(kinds)}


def summarize(mode: str, cfg: dict, raw: dict, window: float) -> dict:
    users = raw["users"]
    start, end = raw["load_start"], raw["load_end"]
    out = {
        "bench": f"gateway_{mode}",
        "users": len(users),
        "users_with_a_cluster": raw["users_ready"],
        "setup_s": raw["setup_s"],
        "load_s": round(end - start, 1),
        "settings": {k: v for k, v in cfg.items() if k != "users"},
        "tasks": requests(users, "samples"),
        "api_calls": requests(users, "api"),
        "clients_replaced": sum(u["client_replaced"] for u in users),
        "cluster_churn": sum(max(0, len(u["clusters"]) - 1) for u in users),
        "cluster_ready_s": stats([c["ready_s"] for u in users for c in u["clusters"]]),
        "gateway": gateway_usage(raw["gateway_samples"]),
        "failures": failures(users),
        "crashed": raw["crashed"],
    }
    finals = [u["final"] for u in users]
    kept = [f for f in finals if f.get("listed") and f.get("running") and f.get("computes")]
    out["clusters_lost"] = len(users) - len(kept)
    out["clusters_lost_detail"] = [dict(f, user=u["user"]) for u, f in zip(users, finals, strict=True) if f not in kept]
    if mode == "soak":
        out["windows"] = windows(users, start, end, window)
    r = raw.get("restart") or {}
    if r:
        at = r["restart_at"]
        back = []
        for u in users:
            # The first task that succeeded on an attempt started after the restart.
            later = [s for s in u["samples"] if s[3] and s[4] >= at]
            if later:
                back.append(later[0][0] + later[0][1] - at)
        out["restart"] = {
            "at_s": round(at - start, 1),
            "main_pid_before_after": r.get("main_pid_before_after"),
            "systemctl_restart_took_s": round(r["restart_returned_at"] - at, 2),
            "api_health_back_s": round(r["health_back_at"] - at, 2) if "health_back_at" in r else None,
            "users_computing_again": len(back),
            "all_users_computing_again_s": round(max(back), 2) if len(back) == len(users) else None,
            "users_computing_again_s": stats(back),
        }
        near = [s for u in users for s in u["samples"] if at - 5 <= s[0] <= at + 60]
        out["restart"]["tasks_in_restart_minute"] = {
            "total": len(near),
            "retried_then_ok": sum(1 for s in near if s[3] and s[2] > 1),
            "failed_beyond_retries": sum(1 for s in near if not s[3]),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["restart", "soak"])
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--duration", type=float, help="seconds of load (restart: 150, soak: 600)")
    ap.add_argument("--restart-at", type=float, default=45.0, help="restart: seconds into the load")
    ap.add_argument("--think", type=float, default=1.0, help="mean pause between a user's tasks (s)")
    ap.add_argument("--api-every", type=float, default=10.0)
    ap.add_argument("--churn-users", type=int, help="soak: users who replace their cluster (default users/5)")
    ap.add_argument("--churn-every", type=float, default=120.0)
    ap.add_argument("--retry-deadline", type=float, default=60.0)
    ap.add_argument("--attempt-timeout", type=float, default=30.0)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--raw", help="also write the raw samples to this file")
    args = ap.parse_args()
    soak = args.mode == "soak"
    if args.users < 1 or (args.duration is not None and args.duration <= 0):
        ap.error("--users and --duration must be positive")
    cfg = {
        "duration_s": args.duration or (600.0 if soak else 150.0),
        "restart_at": None if soak else args.restart_at,
        "think_s": args.think,
        "api_every": args.api_every,
        "churn_users": (args.users // 5 if args.churn_users is None else args.churn_users) if soak else 0,
        "churn_every": args.churn_every,
        "retry_deadline": args.retry_deadline,
        "attempt_timeout": args.attempt_timeout,
        "ramp_s": 20.0,
        "setup_timeout": 300.0,
        "sample_every": 30.0,
    }
    if not soak and not 0 < cfg["restart_at"] < cfg["duration_s"]:
        ap.error("--restart-at must fall inside --duration")
    put(CLIENT, (HERE / "_gateway_load_client.py").read_text())
    with bench_users(args.users) as users:
        proc = subprocess.run(
            ["docker", "exec", "-i", "-w", "/tmp", "-e", "HOME=/tmp", HOST, PY, CLIENT],
            input=json.dumps({**cfg, "users": users}),
            capture_output=True,
            text=True,
            timeout=cfg["duration_s"] + cfg["setup_timeout"] + 600,
            check=False,
        )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"the load client failed (rc {proc.returncode})")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    if args.raw:
        Path(args.raw).write_text(json.dumps(raw))
    out = summarize(args.mode, cfg, raw, args.window)
    print(json.dumps(out, indent=2))
    ok = out["tasks"]["failed_beyond_retries"] == 0 and out["clusters_lost"] == 0 and not out["crashed"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
