"""dask-gateway's SlurmBackend for the platform's Slurm fleet (issue #9).

What upstream's SlurmBackend lacks here:

* one ``partition`` for everything: per-user schedulers belong on the scheduler node's
  partition (long-lived, never on an instance the fleet may terminate), workers on the fleet's;
* ``dask-scheduler``/``dask-worker`` commands: the platform runs ``dask scheduler``/``dask worker``
  from the pinned environment;
* 60 s start timeouts: a job queued behind others is cancelled and resubmitted every minute,
  losing its place in the queue; here the timeouts are long and the queue decides;
* workers only after the scheduler runs: a cluster asked to start with workers (the ``workers``
  option, ``FleetBackend``) submits them right after its scheduler, and they find it through a
  scheduler file in the staging directory: they wait in the queue, and start, at the same time as
  their scheduler instead of one submission and one pass of Slurm's scheduler after it;
* a bare PENDING: while a job waits, Slurm's reason and its position among the partition's
  pending jobs are kept per job (``pending``) and logged whenever they change, for the gateway to
  report to the client.

Status polling runs as the gateway's service user, a Slurm operator (PrivateData hides other
users' jobs from everyone else).

``FleetBackend`` is what the role configures for ``dask_gateway_backend: slurm``: the platform's
quotas (``PolicyBackendMixin``) over ``PlatformSlurmBackend``, with the waiting reason in the
cluster report every client reads (``options["slurm_pending"]``: dask-gateway's API has no other
free-form field a stock client accepts).
"""

from __future__ import annotations

import asyncio
import copy
import os
import shlex

from dask_gateway_server.backends.db_base import JobStatus
from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend, SlurmClusterConfig
from dask_gateway_server.traitlets import Type
from traitlets import Integer, Unicode, default

from .backend import PolicyBackendMixin, user_identity

DASK = "/opt/dask/current/bin/dask"
PENDING_STATE = "PD"
# The cluster report's options key a waiting cluster's Slurm reason is shown under.
PENDING_KEY = "slurm_pending"
ALIVE_STATES = ("R", "CG", "PD", "CF")
# In the staging directory: the scheduler's address, for workers submitted before it ran.
SCHEDULER_FILE = "scheduler.json"


def wait_for_scheduler_file(path: str) -> str:
    """Shell lines that wait until the scheduler has written ``path``.

    Each poll re-opens the directory: on NFS (EFS) opening it revalidates the directory, where a
    bare stat could trust a cached "no such file" for up to a minute (the attribute cache).
    Every 0.1 s for the first 10 s, then every 2 s (a scheduler still queued).
    """
    d, f = shlex.quote(os.path.dirname(path)), shlex.quote(path)
    return "\n".join(
        [
            "# Submitted with its scheduler: wait for the scheduler's address.",
            "n=0",
            f"until [ -s {f} ]; do",
            f"  ls {d} >/dev/null 2>&1",
            '  if [ "$n" -lt 100 ]; then n=$((n + 1)); sleep 0.1; else sleep 2; fi',
            "done",
        ]
    )


class PlatformSlurmClusterConfig(SlurmClusterConfig):
    """Cluster options on the platform's Slurm: separate scheduler and worker partitions."""

    scheduler_partition = Unicode("schedulers", help="Partition of the cluster's scheduler job.", config=True)
    worker_partition = Unicode("workers", help="Partition of the cluster's worker jobs.", config=True)

    @default("scheduler_cmd")
    def _default_scheduler_cmd(self):
        return [DASK, "scheduler"]

    @default("worker_cmd")
    def _default_worker_cmd(self):
        return [DASK, "worker"]

    @default("staging_directory")
    def _default_staging_directory(self):
        # The user's home on EFS: every node sees it, so the TLS files reach the workers.
        return "{home}/.dask-gateway/"


def queue_positions(stdout):
    """``squeue -t PD -p P --sort=-p,i -o %i`` (highest priority first) -> {job_id: 1-based position}."""
    ids = [line.strip() for line in stdout.splitlines() if line.strip()]
    return {job_id: n for n, job_id in enumerate(ids, start=1)}


def describe_pending(reason, position, partition):
    """The message a waiting user sees, for example 'waiting for Slurm: Resources (2nd in workers)'."""
    text = {
        "Resources": "the fleet is full",
        "Priority": "higher-priority jobs are ahead",
        "QOSMaxCpuPerUserLimit": "your clusters already use your CPU share",
        "QOSMaxMemoryPerUser": "your clusters already use your memory share",
        "None": "being scheduled",
    }.get(reason, reason)
    where = f"position {position} in partition {partition}" if position else f"partition {partition}"
    return f"waiting for Slurm: {text} ({reason}; {where})"


def _running(record) -> bool:
    """A cluster or worker record that is running (or past it), as the gateway's database says."""
    status = getattr(record, "status", None)
    return status is not None and status >= JobStatus.RUNNING


class PlatformSlurmBackend(SlurmBackend):
    """SlurmBackend with scheduler/worker partitions, long start timeouts and pending reasons."""

    cluster_config_class = Type(
        "dataplatform_dask.gateway.slurm_backend.PlatformSlurmClusterConfig",
        klass="dask_gateway_server.backends.base.ClusterConfig",
        help="The cluster config class to use",
        config=True,
    )

    # Long enough for a queued job: the queue, not a timer, decides when it starts.
    @default("cluster_start_timeout")
    def _default_cluster_start_timeout(self):
        return 24 * 3600.0

    @default("worker_start_timeout")
    def _default_worker_start_timeout(self):
        return 24 * 3600.0

    # One squeue for all jobs per period: a waiting user's reason and position stay current, and a
    # job Slurm lost is noticed within seconds rather than upstream's 30.
    @default("cluster_status_period")
    def _default_cluster_status_period(self):
        return 5.0

    @default("worker_status_period")
    def _default_worker_status_period(self):
        return 5.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # job id -> {"reason": ..., "position": ..., "partition": ..., "message": ...}
        self.pending = {}

    # --- submission -------------------------------------------------------------------------

    def scheduler_file(self, cluster) -> str:
        return os.path.join(self.get_staging_directory(cluster), SCHEDULER_FILE)

    def get_scheduler_command(self, cluster):
        cmd = super().get_scheduler_command(cluster)
        if int(getattr(cluster, "count", 0) or 0) > 0:
            cmd += ["--scheduler-file", self.scheduler_file(cluster)]
        return cmd

    def get_worker_command(self, cluster, worker_name, scheduler_address=None):
        cmd = super().get_worker_command(cluster, worker_name, scheduler_address)
        if scheduler_address is None and not cluster.scheduler_address:
            # Submitted before its scheduler ran: the address comes from the scheduler file.
            at = len(cluster.config.worker_cmd)
            cmd[at : at + 1] = ["--scheduler-file", self.scheduler_file(cluster)]
        return cmd

    def get_submit_cmd_env_stdin(self, cluster, worker=None):
        cmd, env, _script = super().get_submit_cmd_env_stdin(cluster, worker)
        # The script again, its command quoted (a preload is Python text, a path may have spaces).
        if worker:
            command = self.get_worker_command(cluster, worker.name)
            lines = ["#!/bin/sh", cluster.config.worker_setup]
            if "--scheduler-file" in command:
                lines.append(wait_for_scheduler_file(command[command.index("--scheduler-file") + 1]))
        else:
            command = self.get_scheduler_command(cluster)
            lines = ["#!/bin/sh", cluster.config.scheduler_setup]
        script = "\n".join([*lines, shlex.join(command)])
        partition = cluster.config.worker_partition if worker else cluster.config.scheduler_partition
        cmd = [arg for arg in cmd if not arg.startswith("--partition=")]
        if partition:
            cmd.insert(2, "--partition=" + partition)
        kind = "worker" if worker else "scheduler"
        cmd = [("--job-name=dask-" + kind) if arg == "--job-name=dask-gateway" else arg for arg in cmd]
        return cmd, env, script

    async def _cluster_to_submitted(self, cluster):
        await super()._cluster_to_submitted(cluster)
        # A cluster that starts with workers: submit them now, behind their scheduler in the queue.
        if (
            cluster.status == JobStatus.SUBMITTED
            and cluster.target == JobStatus.RUNNING
            and cluster.count > 0
            and not cluster.workers
        ):
            for _n in range(cluster.count):
                worker = self.db.create_worker(cluster)
                self.log.info("Created worker %s for cluster %s, with its scheduler", worker.name, cluster.name)
                self.queue.put(worker)

    # --- status -----------------------------------------------------------------------------

    def get_status_cmd_env(self, job_ids):
        cmd = [self.status_command, "-h", "--jobs=" + ",".join(job_ids), "-o", "%i|%t|%r|%P"]
        return cmd, {}

    def parse_job_states(self, stdout):
        states = {}
        self._last_status = {}
        for line in stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 3 or not parts[0]:
                continue
            job_id, state, reason = parts[0], parts[1], parts[2]
            partition = parts[3] if len(parts) > 3 else ""
            states[job_id] = state in ALIVE_STATES
            self._last_status[job_id] = (state, reason, partition)
        return states

    async def check_jobs(self, job_ids):
        if not job_ids:
            return {}
        states = await self._squeue_states(job_ids)
        status = getattr(self, "_last_status", {})
        waiting = {j: s for j, s in status.items() if s[0] == PENDING_STATE}
        for job_id in list(self.pending):
            if job_id not in waiting:
                self.pending.pop(job_id)
        partitions = sorted({s[2] for s in waiting.values()})
        positions = {}
        for partition in partitions:
            positions.update(await self._positions(partition))
        for job_id, (_state, reason, partition) in waiting.items():
            info = {"reason": reason, "position": positions.get(job_id), "partition": partition}
            info["message"] = describe_pending(reason, info["position"], partition)
            if self.pending.get(job_id, {}).get("message") != info["message"]:
                self.log.info("Slurm job %s: %s", job_id, info["message"])
            self.pending[job_id] = info
        return states

    async def _squeue_states(self, job_ids):
        """Upstream's check, except that jobs Slurm no longer knows are dead, not an error.

        squeue exits 1 with 'Invalid job id specified' when none of the ids is known any more
        (purged MinJobAge after they ended); upstream then raises on every poll and never
        notices the cluster is gone.
        """
        cmd, env = self.get_status_cmd_env(job_ids)
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, stderr = await proc.communicate()
        stdout, stderr = stdout.decode("utf8", "replace"), stderr.decode("utf8", "replace")
        if proc.returncode != 0:
            if "Invalid job id" in stderr:
                self._last_status = {}
                return {}
            self.log.warning("Slurm status check failed with returncode %d, stderr: %s", proc.returncode, stderr)
            raise RuntimeError(f"Slurm status check failed: {stderr.strip()}")
        return self.parse_job_states(stdout)

    async def _positions(self, partition):
        cmd = [self.status_command, "-h", "-t", "PD", "-p", partition, "--sort=-p,i", "-o", "%i"]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, _stderr = await proc.communicate()
        if proc.returncode != 0:
            return {}
        return queue_positions(stdout.decode("utf8", "replace"))

    def pending_report(self, cluster):
        """What the client should see for a cluster that waits in Slurm's queue, or None.

        A scheduler or worker that has reported in since the last poll waits no longer, whatever
        the poll said (the reasons are refreshed every status period, starts are seen at once).
        """
        job_id = cluster.state.get("job_id") if cluster.state else None
        if job_id in self.pending and not _running(cluster):
            return dict(self.pending[job_id], job="scheduler")
        for worker in getattr(cluster, "workers", {}).values():
            wid = worker.state.get("job_id") if worker.state else None
            if wid in self.pending and not _running(worker):
                return dict(self.pending[wid], job="worker " + worker.name)
        return None


class FleetBackend(PolicyBackendMixin, PlatformSlurmBackend):
    """The platform's quotas and admin listings over Slurm; reports say why a cluster waits.

    The report is a copy: the options stored in the database stay what the user asked.
    """

    min_uid = Integer(1000, help="Lowest uid that may own a cluster.", config=True)

    async def start_cluster(self, user, cluster_options):
        # A clear message before anything is submitted: no account, or a system account.
        user_identity(user.name, self.min_uid)
        return await super().start_cluster(user, cluster_options)

    def with_pending(self, model):
        """``model`` (a cluster report) with ``options["slurm_pending"]`` while a job waits."""
        if model is None or not hasattr(self, "db"):
            return model
        record = self.db.get_cluster(model.name)
        report = self.pending_report(record) if record is not None else None
        if report is None:
            return model
        out = copy.copy(model)
        pending = dict(report, message=f"{report['job']}: {report['message']}")
        out.options = dict(model.options or {}, **{PENDING_KEY: pending})
        return out

    async def get_cluster(self, cluster_name, wait=False):
        return self.with_pending(await super().get_cluster(cluster_name, wait=wait))

    async def list_clusters(self, username=None, statuses=None):
        return [self.with_pending(c) for c in await super().list_clusters(username=username, statuses=statuses)]
