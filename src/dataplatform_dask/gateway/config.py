# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply the gateway settings file (written by the role from its variables) to a traitlets config.

The rendered dask_gateway_config.py is two lines that call ``configure(c, path)``: operators set
role variables, never Python.
"""

from __future__ import annotations

import json

from .tls import use_ec_cluster_keys

BACKENDS = {
    "local": "dataplatform_dask.gateway.backend.PlatformLocalBackend",
    "slurm": "dataplatform_dask.gateway.slurm_backend.FleetBackend",
}


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_keys(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def configure(c, path: str) -> dict:
    s = load(path)
    # Clusters' self-signed credentials on P-256, not RSA-2048 generated in the event loop.
    use_ec_cluster_keys()
    gw = s["gateway"]
    c.DaskGateway.address = gw["api_address"]
    c.DaskGateway.log_level = gw.get("log_level", "INFO")
    c.DaskGateway.authenticator_class = "dataplatform_dask.gateway.auth.FreeIPAAuthenticator"
    kind = gw.get("backend", "local")
    if kind not in BACKENDS:
        raise ValueError(f"gateway.backend must be one of {sorted(BACKENDS)} (got {kind!r})")
    c.DaskGateway.backend_class = gw.get("backend_class") or BACKENDS[kind]

    c.Proxy.address = gw["address"]
    c.Proxy.tcp_address = gw["tcp_address"]
    c.Proxy.log_level = gw.get("proxy_log_level", "warn")
    if gw.get("tls_cert"):
        c.Proxy.tls_cert = gw["tls_cert"]
        c.Proxy.tls_key = gw["tls_key"]

    c.FreeIPAAuthenticator.auth_settings = s["auth"]
    c.FreeIPAAuthenticator.policy_settings = s["policy"]

    backend = c[c.DaskGateway.backend_class.rsplit(".", 1)[1]]
    backend.policy_settings = s["policy"]
    backend.db_url = gw["db_url"]
    backend.db_encrypt_keys = read_keys(gw["encrypt_keys_file"])
    # Clusters outlive a restart of the gateway: it finds them again in the database.
    backend.stop_clusters_on_shutdown = False
    backend.cluster_status_period = float(gw.get("status_period", 30))
    backend.worker_status_period = float(gw.get("status_period", 30))
    backend.cluster_heartbeat_period = int(gw.get("heartbeat_period", 15))
    backend.min_uid = int(gw.get("min_uid", 1000))
    if kind == "slurm":
        _configure_slurm(c, backend, gw, s["slurm"])
    else:
        # Local clusters heartbeat to the private API (no TLS to trust, no proxy hop).
        backend.api_url = gw.get("api_url") or f"http://{gw['api_address']}/api"
        backend.clusters_directory = gw["clusters_directory"]
        # Schedulers and workers fork from a pre-imported launcher ("zygote"), or start as fresh
        # processes ("spawn", the stock path).
        backend.launcher = gw.get("launcher", "zygote")
        backend.launcher_dask_command = gw["dask_command"]

    # backend slurm: through the node's pre-imported launcher (dask-job-start), where configured.
    wrapper = [s["slurm"]["job_start"]] if kind == "slurm" and s["slurm"].get("job_start") else []
    c.ClusterConfig.scheduler_cmd = [*wrapper, gw["dask_command"], "scheduler"]
    c.ClusterConfig.worker_cmd = [*wrapper, gw["dask_command"], "worker"]
    c.ClusterConfig.idle_timeout = float(s["policy"].get("idle_timeout", 7200))
    c.ClusterConfig.environment = {str(k): str(v) for k, v in gw.get("cluster_environment", {}).items()}
    return s


def _configure_slurm(c, backend, gw, sl: dict) -> None:
    """Clusters as Slurm jobs: submitted as their user through sudo, polled as the gateway's user."""
    # Schedulers on other hosts reach the gateway through its public (TLS) endpoint.
    backend.api_url = gw["api_url"]
    backend.dask_gateway_jobqueue_launcher = sl["launcher"]
    backend.submit_command = sl["bin_dir"].rstrip("/") + "/sbatch"
    backend.cancel_command = sl["bin_dir"].rstrip("/") + "/scancel"
    backend.status_command = sl["bin_dir"].rstrip("/") + "/squeue"
    # A queued job keeps its place: the queue, not a timer, decides when it starts.
    backend.cluster_start_timeout = float(sl["start_timeout"])
    backend.worker_start_timeout = float(sl["start_timeout"])
    cfg = c.PlatformSlurmClusterConfig
    cfg.scheduler_partition = sl["scheduler_partition"]
    cfg.worker_partition = sl["worker_partition"]
    # In the user's home on EFS: every node reads the cluster's TLS files from there.
    cfg.staging_directory = sl["staging_directory"]
