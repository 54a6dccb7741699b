"""A data engineer's first job through the gateway, as `make demo` and the end-to-end test run it.

Runs with the platform's Python on a client host (here the gateway container, whose
gateway.yaml site.yml wrote). Logs in with a FreeIPA password, starts a cluster, scales it to
two workers, writes generated time-series data as parquet to the shared file system, reads it
back with a groupby on the cluster and checks the answer against pandas reading the same files
in this process. Prints one JSON line.

    DEMO_PASSWORD=... python demo_job.py USER [--days N] [--root /mnt/efs/shared]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import dask
import dask.dataframe as dd
import pandas as pd
from dask_gateway import BasicAuth, Gateway


def stamp(timings: dict, name: str, since: float) -> float:
    now = time.perf_counter()
    timings[name] = round(now - since, 2)
    return now


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("user")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--root", default="/mnt/efs/shared")
    args = p.parse_args()
    password = os.environ.get("DEMO_PASSWORD", "")
    path = f"{args.root}/demo-{args.user}.parquet"
    timings: dict[str, float] = {}
    t = time.perf_counter()
    # Address, proxy address and TLS from gateway.yaml; the password is the user's FreeIPA one.
    with Gateway(auth=BasicAuth(args.user, password)) as gateway:
        cluster = gateway.new_cluster()
        try:
            t = stamp(timings, "new_cluster_s", t)
            cluster.scale(2)
            client = cluster.get_client()
            client.wait_for_workers(2, timeout=300)
            t = stamp(timings, "two_workers_s", t)

            # The workers write the data set to the shared file system, as the user.
            start = pd.Timestamp("2026-01-01")
            frame = dask.datasets.timeseries(
                start=start, end=start + pd.Timedelta(days=args.days), freq="1s", partition_freq="1D", seed=42
            )
            frame.to_parquet(path, overwrite=True, write_index=False)
            t = stamp(timings, "write_parquet_s", t)

            result = dd.read_parquet(path).groupby("name")["x"].agg(["count", "mean"]).compute()
            t = stamp(timings, "groupby_s", t)
            owners = client.run_on_scheduler(lambda: (os.getuid(), os.getgid()))
            dashboard = cluster.dashboard_link
            cluster_name = cluster.name
        finally:
            cluster.shutdown()

    # Checked here, independently: pandas reads the files the cluster wrote.
    expected = pd.read_parquet(path).groupby("name")["x"].agg(["count", "mean"])
    rows = int(result["count"].sum())
    matches = bool(
        rows == args.days * 86_400
        and result.sort_index().index.equals(expected.sort_index().index)
        and (result.sort_index()["count"] == expected.sort_index()["count"]).all()
        and ((result.sort_index()["mean"] - expected.sort_index()["mean"]).abs() < 1e-9).all()
    )
    files = sorted(f for f in os.listdir(path) if f.endswith(".parquet"))
    stat = os.stat(os.path.join(path, files[0]))
    top = {
        name: {"count": int(row["count"]), "mean": round(float(row["mean"]), 6)}
        for name, row in result.sort_values("count", ascending=False).head(5).iterrows()
    }
    print(
        json.dumps(
            {
                "user": args.user,
                "cluster": cluster_name,
                "dashboard": dashboard,
                "path": path,
                "files": len(files),
                "file_uid": stat.st_uid,
                "scheduler_uid_gid": list(owners),
                "rows": rows,
                "groups": len(result),
                "top5": top,
                "matches_pandas": matches,
                "timings": timings,
            }
        )
    )
    return 0 if matches else 1


if __name__ == "__main__":
    sys.exit(main())
