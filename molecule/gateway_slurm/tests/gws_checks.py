"""Client actions run inside the gateway container as a user would (the platform's venv, the
gateway's CA from the system store, password login); each prints one JSON line.

Usage: python gws_checks.py ACTION USER PASSWORD [ARGS...]
  new N            a cluster, then scale(N), N workers running (waits for them); prints its name
  start N          a cluster started with N workers (the workers option; waits for them)
  submit           a cluster, without waiting; prints its name
  report NAME      the cluster's status and why it waits (options["slurm_pending"])
  scale NAME N     ask for N workers; prints the error the gateway gives, if any
  workers NAME N   wait (up to 180 s) for N workers
  compute NAME     a real computation, and the uid the scheduler and workers run as
  long NAME N      N one-second tasks; prints their result and the hosts that ran them
  stop NAME
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from dask_gateway import BasicAuth, Gateway

PENDING_KEY = "slurm_pending"


def out(**kw):
    print(json.dumps(kw, default=str), flush=True)


def ident():
    return {"uid": os.getuid(), "host": socket.gethostname().split(".")[0]}


def main() -> None:
    action, user, password, *args = sys.argv[1:]
    with Gateway(auth=BasicAuth(user, password)) as gw:
        if action == "new":
            cluster = gw.new_cluster(shutdown_on_close=False)
            if int(args[0]) > 0:
                cluster.scale(int(args[0]))
                with cluster.get_client() as client:
                    client.wait_for_workers(int(args[0]), timeout=240)
            out(name=cluster.name)
        elif action == "start":
            cluster = gw.new_cluster(shutdown_on_close=False, workers=int(args[0]))
            with cluster.get_client() as client:
                client.wait_for_workers(int(args[0]), timeout=240)
            out(name=cluster.name)
        elif action == "submit":
            out(name=gw.submit())
        elif action == "report":
            report = gw.get_cluster(args[0])
            out(status=report.status.name, pending=report.options.get(PENDING_KEY))
        elif action == "scale":
            try:
                gw.scale_cluster(args[0], int(args[1]))
            except Exception as exc:  # the gateway's refusal, as the client shows it
                out(error=f"{type(exc).__name__}: {exc}")
            else:
                out(error=None)
        elif action == "workers":
            with gw.connect(args[0]) as cluster, cluster.get_client() as client:
                client.wait_for_workers(int(args[1]), timeout=180)
                out(workers=len(client.scheduler_info()["workers"]))
        elif action == "compute":
            with gw.connect(args[0]) as cluster, cluster.get_client() as client:
                start = time.monotonic()
                total = client.submit(sum, range(1_000_001)).result()
                squares = sum(client.gather(client.map(lambda i: i * i, range(100))))
                out(
                    total=total,
                    squares=squares,
                    seconds=round(time.monotonic() - start, 2),
                    scheduler=client.run_on_scheduler(ident),
                    workers=list(client.run(ident).values()),
                )
        elif action == "long":
            with gw.connect(args[0]) as cluster, cluster.get_client() as client:

                def task(i):
                    time.sleep(1)
                    return i * i, socket.gethostname().split(".")[0]

                start = time.monotonic()
                results = client.gather(client.map(task, range(int(args[1])), pure=False))
                out(
                    total=sum(r[0] for r in results),
                    hosts=sorted({r[1] for r in results}),
                    seconds=round(time.monotonic() - start, 2),
                )
        elif action == "stop":
            gw.stop_cluster(args[0])
            out(stopped=args[0])
        else:
            raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main()
