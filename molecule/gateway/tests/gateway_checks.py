"""Client actions run inside the gateway container (the platform's venv); each prints one JSON line.

Usage: python gateway_checks.py ACTION AUTH USER PASSWORD [ARGS...]
AUTH: default (gateway.yaml: Kerberos from KRB5CCNAME), basic (USER/PASSWORD).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
import warnings

from dask_gateway import BasicAuth, Gateway


def gateway(auth: str, user: str, password: str) -> Gateway:
    if auth == "default":
        return Gateway()  # address, proxy address and Kerberos auth from gateway.yaml
    return Gateway(auth=BasicAuth(user, password))


def identities(client) -> dict:
    def ident():
        import dask.config

        return {
            "uid": os.getuid(),
            "gid": os.getgid(),
            "groups": sorted(os.getgroups()),
            "cwd": os.getcwd(),
            "tick": dask.config.get("distributed.admin.tick.interval"),  # dask_gateway_cluster_environment
        }

    return {"scheduler": client.run_on_scheduler(ident), "worker_ids": list(client.run(ident).values())}


def compute(client) -> dict:
    import dask.array as da

    x = da.arange(1_000_000, chunks=100_000)
    total = int(x.sum().compute())
    futures = client.map(lambda i: i * i, range(100))
    squares = sum(client.gather(futures))
    return {"array_sum": total, "array_expected": 999_999 * 1_000_000 // 2, "squares": squares}


def home_roundtrip(client) -> dict:
    """A task writes a file in the user's home (~) and the next one reads it back."""

    def write():
        path = os.path.expanduser("~/written-by-dask.txt")
        with open(path, "w") as f:
            f.write(f"uid {os.getuid()}")
        return path

    def read(path):
        with open(path) as f:
            return f.read()

    path = client.submit(write, pure=False).result()
    return {"home_file": path, "home_read": client.submit(read, path, pure=False).result()}


def wait_workers(client, n: int, timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        count = len(client.scheduler_info()["workers"])
        if count >= n:
            return count
        time.sleep(0.5)
    return len(client.scheduler_info()["workers"])


def http_status(url: str, user: str = "", password: str = "") -> int:
    req = urllib.request.Request(url)
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main(argv: list[str]) -> dict:
    action, auth, user, password, *args = argv
    out: dict = {"action": action, "user": user}
    with gateway(auth, user, password) as gw:
        if action == "session":
            # new_cluster -> scale -> compute -> identities; "keep" leaves the cluster running.
            workers = int(args[0])
            keep = len(args) > 1 and args[1] == "keep"
            cluster = gw.new_cluster(shutdown_on_close=not keep)
            out["cluster"] = cluster.name
            cluster.scale(workers)
            with cluster.get_client(set_as_default=False) as client:
                out["workers"] = wait_workers(client, workers)
                out.update(compute(client))
                out.update(identities(client))
                if auth == "default":
                    out.update(home_roundtrip(client))
            out["dashboard"] = link = cluster.dashboard_link
            if auth == "basic":
                # Dashboards sit behind the gateway's authentication and the owner check.
                out["dashboard_status"] = {
                    "owner": http_status(link, user, password),
                    "anonymous": http_status(link),
                    "other": http_status(link, "bob", "Bob-Secret123"),
                }
            if not keep:
                cluster.shutdown()
        elif action == "compute":
            cluster = gw.connect(args[0])
            with cluster.get_client(set_as_default=False) as client:
                out["workers"] = wait_workers(client, 1)
                out.update(compute(client))
                out.update(identities(client))
        elif action == "new":
            try:
                options = gw.cluster_options()
                for kv in args:
                    k, v = kv.split("=", 1)
                    setattr(options, k, type(getattr(options, k))(v))
                cluster = gw.new_cluster(options, shutdown_on_close=False)
                out["cluster"] = cluster.name
            except Exception as exc:
                # What the user sees: the exception's type and text.
                out["error"] = f"{type(exc).__name__}: {exc}"
        elif action == "scale":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    gw.scale_cluster(args[0], int(args[1]))
                    out["ok"] = True
                except Exception as exc:
                    out["ok"] = False
                    out["error"] = str(exc)
            out["warnings"] = [str(w.message) for w in caught]
        elif action == "list":
            try:
                out["clusters"] = {c.name: c.status.name for c in gw.list_clusters()}
            except Exception as exc:
                out["error"] = f"{type(exc).__name__}: {exc}"
        elif action == "stop":
            try:
                gw.stop_cluster(args[0])
                out["ok"] = True
            except Exception as exc:
                out["ok"] = False
                out["error"] = str(exc)
        else:
            raise SystemExit(f"unknown action {action}")
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
