"""Dask Gateway latency under N concurrent users; prints JSON.

Each user: new_cluster -> scale(1) -> submit -> result -> shutdown, timed per step. The same run
goes against two gateways this script starts on 127.0.0.1 of this host:

- ``stock``: dask-gateway's UnsafeLocalBackend and SimpleAuthenticator;
- ``platform``: the collection's FreeIPAAuthenticator (LDAP binds against the identity peer,
  ``tests/peers/identity.py start``), the quota mixin, P-256 cluster keys, and the launcher the
  role configures: ``--launcher zygote`` (default; schedulers and workers fork from a
  pre-imported process) or ``--launcher spawn`` (fresh processes, as stock).

Processes run as the caller on both, so the ratio isolates what authentication, group lookups
and the quota lock cost; the setuid launch of PlatformLocalBackend needs the users to exist on
the host (the Molecule scenario exercises that). Per-user limits are lifted for the run.

usage: python bench/gateway_latency.py [--users 30] [--user alice:Alice-Secret123] [--only stock|platform]
                                      [--launcher zygote|spawn]
Target: new_cluster -> first result p95 <= 2 s at 30 users (the spec allows 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from dask_gateway import BasicAuth, Gateway

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "roles" / "dask_gateway" / "files"
VENV_BIN = Path(sys.executable).parent
STEPS = ["new_cluster", "scale", "submit_result", "first_result", "shutdown"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


STOCK_CONFIG = """
c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{port}"
c.Proxy.tcp_address = "127.0.0.1:{tcp}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.UnsafeLocalBackend.clusters_directory = "{workdir}"
c.ClusterConfig.scheduler_cmd = ["{bin}/dask", "scheduler"]
c.ClusterConfig.worker_cmd = ["{bin}/dask", "worker"]
c.ClusterConfig.worker_memory = "1 G"
c.ClusterConfig.scheduler_memory = "1 G"
"""

PLATFORM_CONFIG = """
import os
import sys
from dask_gateway_server.backends.local import UnsafeLocalBackend
from dataplatform_gateway.backend import LauncherMixin, PolicyBackendMixin
from dataplatform_gateway.tls import use_ec_cluster_keys
use_ec_cluster_keys()
class BenchBackend(PolicyBackendMixin, LauncherMixin, UnsafeLocalBackend):
    def launch_identity(self, cluster):
        return os.getuid(), os.getgid(), os.getgroups()
sys.modules["bench_backend"] = type(sys)("bench_backend")
sys.modules["bench_backend"].BenchBackend = BenchBackend
c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{port}"
c.Proxy.tcp_address = "127.0.0.1:{tcp}"
c.DaskGateway.backend_class = BenchBackend
c.DaskGateway.authenticator_class = "dataplatform_gateway.auth.FreeIPAAuthenticator"
c.FreeIPAAuthenticator.auth_settings = {auth!r}
c.FreeIPAAuthenticator.policy_settings = {policy!r}
c.BenchBackend.policy_settings = {policy!r}
c.BenchBackend.clusters_directory = "{workdir}"
c.BenchBackend.launcher = "{launcher}"
c.BenchBackend.launcher_allow_self = True
c.BenchBackend.launcher_dask_command = "{bin}/dask"
c.ClusterConfig.scheduler_cmd = ["{bin}/dask", "scheduler"]
c.ClusterConfig.worker_cmd = ["{bin}/dask", "worker"]
c.ClusterConfig.environment = {environment!r}
"""


def role_default(name: str):
    """A default of the dask_gateway role (the bench runs what the role configures)."""
    with open(ROOT / "roles" / "dask_gateway" / "defaults" / "main.yml") as f:
        return yaml.safe_load(f)[name]


def start_gateway(
    kind: str, tmp: Path, ldap_uri: str, launcher: str = "zygote"
) -> tuple[subprocess.Popen, tuple[str, str]]:
    port, api, tcp = free_port(), free_port(), free_port()
    workdir = tmp / kind
    workdir.mkdir()
    fmt = {"api": api, "port": port, "tcp": tcp, "workdir": workdir, "bin": VENV_BIN, "launcher": launcher}
    if kind == "stock":
        text = STOCK_CONFIG.format(**fmt)
    else:
        pw = tmp / "bind-password"
        pw.write_text("Dask-Service-Secret123\n")
        auth = {
            "methods": ["ldap"],
            "realm": "DATAPLATFORM.TEST",
            "uri": ldap_uri,
            "suffix": "dc=dataplatform,dc=test",
            "bind_dn": "uid=dask-service,cn=sysaccounts,cn=etc,dc=dataplatform,dc=test",
            "bind_password_file": str(pw),
            "cache_ttl": 60,
        }
        policy = {
            "fleet_cores": 100_000,
            "fleet_memory_gb": 100_000,
            "max_clusters_per_user": 10_000,
            "worker_memory_gb": 1,
            "scheduler_memory_gb": 1,
            "idle_timeout": 0,
        }
        environment = role_default("dask_gateway_cluster_environment")
        text = PLATFORM_CONFIG.format(auth=auth, policy=policy, environment=environment, **fmt)
    cfg = tmp / f"{kind}_config.py"
    cfg.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(FILES))
    log = (tmp / f"{kind}.log").open("w")
    proc = subprocess.Popen(
        [str(VENV_BIN / "dask-gateway-server"), "--config", str(cfg)], env=env, stdout=log, stderr=log
    )
    address = (f"http://127.0.0.1:{port}", f"gateway://127.0.0.1:{tcp}")
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{address[0]}/api/health", timeout=2) as r:
                if r.status == 200:
                    return proc, address
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"{kind} gateway did not start: see {tmp}/{kind}.log")


async def one_user(address: tuple[str, str], user: str, password: str) -> dict:
    times = {}
    async with Gateway(address[0], proxy_address=address[1], auth=BasicAuth(user, password), asynchronous=True) as gw:
        t0 = time.perf_counter()
        cluster = await gw.new_cluster()
        t1 = time.perf_counter()
        times["new_cluster"] = t1 - t0
        await cluster.scale(1)
        t2 = time.perf_counter()
        times["scale"] = t2 - t1
        async with cluster.get_client(set_as_default=False) as client:
            fut = client.submit(sum, [1, 2, 3])
            assert await fut == 6
        t3 = time.perf_counter()
        times["submit_result"] = t3 - t2
        times["first_result"] = t3 - t0
        await cluster.shutdown()
        times["shutdown"] = time.perf_counter() - t3
    return times


def busy_cpu_seconds() -> float:
    """CPU time the whole host has spent busy (all processes, /proc/stat), in seconds."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def run(address: tuple[str, str], users: int, creds: list[tuple[str, str]]) -> dict:
    t0 = time.perf_counter()
    cpu0 = busy_cpu_seconds()
    results = await asyncio.gather(
        *(one_user(address, *creds[i % len(creds)]) for i in range(users)), return_exceptions=True
    )
    wall = time.perf_counter() - t0
    cpu = busy_cpu_seconds() - cpu0
    ok = [r for r in results if isinstance(r, dict)]
    errors = [repr(r) for r in results if not isinstance(r, dict)]
    steps = {
        s: {
            "p50": round(statistics.median([r[s] for r in ok]), 3),
            "p95": round(pct([r[s] for r in ok], 0.95), 3),
            "max": round(max(r[s] for r in ok), 3),
        }
        for s in STEPS
        if ok
    }
    return {
        "users": users,
        "ok": len(ok),
        "errors": errors[:5],
        "wall_s": round(wall, 2),
        # Host CPU busy during the run (every process, other users' included) and per user.
        "host_cpu_s": round(cpu, 1),
        "host_cpu_s_per_user": round(cpu / users, 2),
        "steps": steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--user", action="append", default=[], help="USER:PASSWORD for the platform gateway (repeat)")
    ap.add_argument("--ldap-uri", default="ldap://127.0.0.1:1389")
    ap.add_argument("--only", choices=["stock", "platform"])
    ap.add_argument(
        "--launcher",
        choices=["zygote", "spawn"],
        default="zygote",
        help="how the platform gateway starts schedulers and workers (dask_gateway_launcher)",
    )
    args = ap.parse_args()
    creds = [tuple(u.split(":", 1)) for u in args.user] or [("alice", "Alice-Secret123")]
    out = {
        "host_cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "launcher": args.launcher,
        "target": "first_result p95 <= 2 s at 30 users (spec: 5 s)",
    }
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as d:
        tmp = Path(d)
        for kind in ["stock", "platform"]:
            if args.only and kind != args.only:
                continue
            proc, address = start_gateway(kind, tmp, args.ldap_uri, args.launcher)
            try:
                kc = creds if kind == "platform" else [("bench", "")]
                out[kind] = asyncio.run(run(address, args.users, kc))
            finally:
                proc.terminate()
                proc.wait(30)
    if "stock" in out and "platform" in out and out["stock"]["steps"] and out["platform"]["steps"]:
        out["ratio_first_result_p95"] = round(
            out["platform"]["steps"]["first_result"]["p95"] / out["stock"]["steps"]["first_result"]["p95"], 2
        )
        out["target_met"] = out["platform"]["steps"]["first_result"]["p95"] <= 2.0
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
