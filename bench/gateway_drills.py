"""Failure drills on the gateway of the `platform` scenario (make demo); prints JSON.

For each drill alice holds a running cluster (made through the gateway with her password,
computing), then the gateway is hit:
- kill -9 of dask-gateway-server's main process (systemd restarts it);
- systemctl restart dask-gateway (a deploy);
and the drill measures the time until the API answers alice again, then checks that her
cluster is still listed and still computes.

usage: .venv/bin/python -m bench.gateway_drills    (after `make demo`, or molecule converge -s platform)
The same restart under 30 users' load, and a 10-minute soak: bench/gateway_soak.py.
"""

from __future__ import annotations

import json
import sys
import time

from bench._platform_gateway import PY, put, sh, wait_healthy

USER, PASSWORD = "alice", "Alice-Secret123"

CLIENT = r"""
import json, sys
from dask_gateway import BasicAuth, Gateway
action, user, password = sys.argv[1:4]
with Gateway(auth=BasicAuth(user, password)) as gw:
    if action == "start":
        cluster = gw.new_cluster(shutdown_on_close=False)
        cluster.scale(1)
        client = cluster.get_client()
        client.wait_for_workers(1, timeout=120)
        print(json.dumps({"name": cluster.name, "sum": client.submit(sum, range(1000)).result()}))
    elif action == "check":
        name = sys.argv[4]
        listed = [c.name for c in gw.list_clusters()]
        out = {"listed": name in listed, "sum": None}
        if out["listed"]:
            cluster = gw.connect(name)
            client = cluster.get_client()
            client.wait_for_workers(1, timeout=120)
            out["sum"] = client.submit(sum, range(1000)).result()
        print(json.dumps(out))
    elif action == "stop":
        gw.stop_cluster(sys.argv[4])
        print(json.dumps({"stopped": sys.argv[4]}))
"""


def client(*args: str) -> dict:
    out = sh(f"runuser -u {USER} -- {PY} /usr/local/share/gateway_drill_client.py " + " ".join(args))
    return json.loads(out.splitlines()[-1])


def drill(name: str, hit: str) -> dict:
    cluster = client("start", USER, PASSWORD)
    before = sh("systemctl show -p MainPID --value dask-gateway")
    start = time.monotonic()
    sh(hit)
    time.sleep(0.3)  # the old process is gone before the first probe
    healthy = wait_healthy(start, USER, PASSWORD)
    after = sh("systemctl show -p MainPID --value dask-gateway")
    check = client("check", USER, PASSWORD, cluster["name"])
    client("stop", USER, PASSWORD, cluster["name"])
    return {
        "drill": name,
        "main_pid_before_after": [before, after],
        "api_back_s": healthy,
        "cluster_still_listed": check["listed"],
        "cluster_still_computes": check["sum"] == sum(range(1000)),
    }


def main() -> int:
    put("/usr/local/share/gateway_drill_client.py", CLIENT)
    results = [
        drill("kill -9 gateway", "kill -9 $(systemctl show -p MainPID --value dask-gateway)"),
        drill("systemctl restart dask-gateway", "systemctl restart dask-gateway"),
    ]
    print(json.dumps({"bench": "gateway_drills", "results": results}, indent=2))
    return 0 if all(r["api_back_s"] is not None and r["cluster_still_computes"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
