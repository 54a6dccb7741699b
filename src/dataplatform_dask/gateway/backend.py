# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backends: the platform's quotas as a mixin, and a LocalBackend that runs clusters as their user.

``PolicyBackendMixin`` uses only dask-gateway's public Backend API (list_clusters,
start_cluster, forward_message_to_scheduler, on_cluster_heartbeat), so a backend that spreads
clusters over the worker fleet takes it unchanged: ``class FleetBackend(PolicyBackendMixin, ...)``.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import socket
import sys

from dask_gateway_server.backends.base import Backend, PublicException
from dask_gateway_server.backends.local import LocalBackend
from dask_gateway_server.models import ClusterStatus
from dask_gateway_server.options import Float, Integer, Options
from traitlets import Bool, Dict, Enum, Unicode, default
from traitlets import Integer as IntegerTrait

from .policy import CURRENT_USER, LazyPolicy, Refused, Usage, cluster_usage, scheduler_usage, worker_usage

ACTIVE = [ClusterStatus.PENDING, ClusterStatus.RUNNING]
# The cluster option that starts a cluster with workers (no scale() round trip after it runs).
WORKERS_OPTION = "workers"
UPSTREAM_PRELOAD = "dask_gateway.scheduler_preload"


def count_preload(count: int) -> str:
    """A scheduler preload (Python text: distributed runs a ``--preload`` value with a space in it
    as a script) giving the gateway's scheduler service its first target, ``count`` workers.

    Upstream's service starts at 0 and retires any worker beyond its target, and it heartbeats
    that target to the gateway, which stops workers past it: workers started with the scheduler
    need the target set before the scheduler accepts its first connection. Preloads run in order,
    right after upstream's has registered the service and before the event loop runs again.
    """
    n = int(count)
    return f"def dask_setup(scheduler): g = scheduler.services['gateway']; g.count = max(g.count, {n})"


class PolicyBackendMixin(Backend):
    """Per-group cluster sizes, per-user cluster count and core and memory share, admin listings."""

    policy_settings = Dict(help="The platform policy (dataplatform_dask.gateway.policy.Policy settings).", config=True)

    policy = LazyPolicy()

    @property
    def _quota_lock(self) -> asyncio.Lock:
        # One lock for every decision that reads and then changes a user's usage.
        if getattr(self, "_dp_lock", None) is None:
            self._dp_lock = asyncio.Lock()
        return self._dp_lock

    @property
    def _targets(self) -> dict:
        if getattr(self, "_dp_targets", None) is None:
            self._dp_targets = {}
        return self._dp_targets

    dashboards_behind_auth = Bool(
        True, help="Serve dashboards only to their owner (and admins), through the gateway.", config=True
    )

    async def setup(self, app):
        await super().setup(app)
        if self.dashboards_behind_auth:
            from . import dashboards

            dashboards.install(self, app)

    @default("cluster_options")
    def _default_cluster_options(self):
        p = self.policy
        return Options(
            Integer("worker_cores", default=p.worker_cores, min=1, label="Cores per worker"),
            Float("worker_memory", default=p.worker_memory_gb, min=0.25, label="Memory per worker (GiB)"),
            Integer(WORKERS_OPTION, default=0, min=0, label="Workers to start with"),
            handler=self._cluster_config_for,
        )

    def _cluster_config_for(self, options, user):
        try:
            return self.policy.cluster_config(user.name, user.groups, options.worker_cores, options.worker_memory)
        except Refused as exc:
            raise ValueError(str(exc)) from None

    async def _usage(self, username, exclude=None):
        clusters = await super().list_clusters(username=username, statuses=ACTIVE)
        clusters = [c for c in clusters if c.name != exclude]
        held = [cluster_usage(c.config, self._targets.get(c.name, 0)) for c in clusters]
        return clusters, Usage(sum(u.cores for u in held), sum(u.memory_gb for u in held))

    async def list_clusters(self, username=None, statuses=None):
        user = CURRENT_USER.get()
        if user is not None and getattr(user, "admin", False) and username == user.name:
            username = None
        return await super().list_clusters(username=username, statuses=statuses)

    async def start_cluster(self, user, cluster_options):
        async with self._quota_lock:
            clusters, in_use = await self._usage(user.name)
            try:
                self.policy.check_new_cluster(
                    user.name,
                    len(clusters),
                    in_use,
                    Usage(self.policy.scheduler_cores, self.policy.scheduler_memory_gb),
                )
            except Refused as exc:
                raise PublicException(str(exc)) from None
            workers = await self._initial_workers(user, cluster_options, in_use)
            name = await super().start_cluster(user, cluster_options)
            self._targets[name] = workers
            if workers:
                self._seed_count(name, workers)
            return name

    async def _initial_workers(self, user, cluster_options, in_use) -> int:
        """The ``workers`` a new cluster asks to start with, checked like a scale request (the
        cluster's own limit and the user's share), or a PublicException naming the limit."""
        if not (cluster_options or {}).get(WORKERS_OPTION):
            return 0
        options, config = await self.process_cluster_options(user, cluster_options)
        count = int(options.get(WORKERS_OPTION) or 0)
        c = config.to_dict()
        most = c.get("cluster_max_workers")
        if most is not None and count > most:
            raise PublicException(
                f"{WORKERS_OPTION}={count} exceeds the {most} workers one cluster may have "
                f"({float(c['cluster_max_cores']):g} cores / {c['cluster_max_memory'] / 1024**3:g} GB per cluster, "
                f"its scheduler included)"
            )
        try:
            self.policy.check_scale(user.name, count, scheduler_usage(c), worker_usage(c), in_use)
        except Refused as exc:
            raise PublicException(f"{WORKERS_OPTION}={count}: {exc}") from None
        return count

    def _seed_count(self, name, count) -> None:
        """A database backend's cluster record starts with ``count`` workers as its target: its
        workers are created as soon as the scheduler runs (and, on Slurm, submitted with it)."""
        db = getattr(self, "db", None)
        record = db.get_cluster(name) if db is not None else None
        if record is not None:
            db.update_cluster(record, count=count)

    def get_scheduler_command(self, cluster):
        cmd = super().get_scheduler_command(cluster)
        count = int(getattr(cluster, "count", 0) or 0)
        if count > 0:
            at = cmd.index(UPSTREAM_PRELOAD) + 1 if UPSTREAM_PRELOAD in cmd else len(cmd)
            cmd[at:at] = ["--preload", count_preload(count)]
        return cmd

    async def forward_message_to_scheduler(self, cluster, msg):
        op = msg.get("op")
        if op in ("scale", "adapt"):
            async with self._quota_lock:
                elsewhere = (await self._usage(cluster.username, exclude=cluster.name))[1]
                sched = scheduler_usage(cluster.config)
                worker = worker_usage(cluster.config)
                if op == "scale":
                    try:
                        self.policy.check_scale(cluster.username, msg["count"], sched, worker, elsewhere)
                    except Refused as exc:
                        raise PublicException(str(exc)) from None
                    self._targets[cluster.name] = msg["count"]
                else:
                    msg = dict(
                        msg,
                        maximum=self.policy.allowed_workers(cluster.username, msg["maximum"], sched, worker, elsewhere),
                    )
                    msg["minimum"] = min(msg["minimum"], msg["maximum"])
        return await super().forward_message_to_scheduler(cluster, msg)

    async def on_cluster_heartbeat(self, cluster_name, msg):
        cluster = await super().get_cluster(cluster_name)
        if cluster is not None:
            elsewhere = (await self._usage(cluster.username, exclude=cluster_name))[1]
            sched = scheduler_usage(cluster.config)
            worker = worker_usage(cluster.config)
            allowed = self.policy.allowed_workers(cluster.username, msg["count"], sched, worker, elsewhere)
            if allowed < msg["count"]:
                self.log.warning(
                    "Cluster %s asked for %d workers, capped to %d by %s's share of the fleet",
                    cluster_name,
                    msg["count"],
                    allowed,
                    cluster.username,
                )
                msg = dict(msg, count=allowed)
            self._targets[cluster_name] = msg["count"]
        return await super().on_cluster_heartbeat(cluster_name, msg)


def user_identity(username, min_uid=1000):
    """(passwd entry, supplementary gids) of a platform user, through NSS (sssd included)."""
    try:
        pw = pwd.getpwnam(username)
    except KeyError:
        raise PublicException(f"user {username} has no Unix account on the gateway host (is sssd running?)") from None
    if pw.pw_uid < min_uid:
        raise PublicException(
            f"user {username} (uid {pw.pw_uid}) is a system account; clusters run only for uids >= {min_uid}"
        )
    # grp.getgrall() does not enumerate sssd groups; getgrouplist asks NSS for this user's.
    return pw, os.getgrouplist(username, pw.pw_gid)


def user_home(pw, workdir):
    """HOME for a user's cluster: their home directory (``~`` in their code), or the cluster's
    working directory while the home does not exist yet (no first login made it)."""
    if pw.pw_dir and os.path.isdir(pw.pw_dir):
        return pw.pw_dir
    return workdir or pw.pw_dir


class LauncherMixin(LocalBackend):
    """Start schedulers and workers through the pre-imported launcher (``dataplatform_dask.forkserver``).

    ``launcher = "zygote"`` sends each ``dask scheduler``/``dask worker`` start to the launcher,
    which forks it with distributed already imported; ``"spawn"`` (or any other command) takes
    the stock path, a fresh process. The pid that comes back is tracked exactly as the stock
    one (status checks, signals on stop), so clusters survive a restart of the gateway either way.
    """

    launcher = Enum(["zygote", "spawn"], "zygote", help="How clusters' processes start.", config=True)
    launcher_dask_command = Unicode(
        help="The dask command the launcher runs in-process (the ClusterConfig commands' first word).", config=True
    )
    launcher_allow_self = Bool(
        False, help="Let the launcher run processes as its own user (benchmarks; never in production).", config=True
    )
    launcher_start_timeout = IntegerTrait(120, help="Seconds the launcher may take to import.", config=True)
    min_uid = IntegerTrait(1000, help="Lowest uid that may own a cluster.", config=True)

    @default("launcher_dask_command")
    def _default_launcher_dask_command(self):
        return os.path.join(os.path.dirname(sys.executable), "dask")

    def launch_identity(self, cluster):
        """(uid, gid, supplementary gids) the cluster's processes run as."""
        pw, groups = user_identity(cluster.username, self.min_uid)
        return pw.pw_uid, pw.pw_gid, groups

    def _zygote_wanted(self, cmd):
        return (
            self.launcher == "zygote"
            and len(cmd) >= 2
            and cmd[0] == self.launcher_dask_command
            and cmd[1] in ("scheduler", "worker")
        )

    async def _zygote_start(self):
        parent, child = socket.socketpair()
        argv = [
            sys.executable,
            "-m",
            "dataplatform_dask.forkserver.gateway",
            "--fd",
            str(child.fileno()),
            "--dask-command",
            self.launcher_dask_command,
            "--min-uid",
            str(self.min_uid),
        ]
        if self.launcher_allow_self:
            argv.append("--allow-self")
        try:
            proc = await asyncio.create_subprocess_exec(*argv, pass_fds=[child.fileno()])
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=1 << 20)
        try:
            line = await asyncio.wait_for(reader.readline(), self.launcher_start_timeout)
        except asyncio.TimeoutError:
            line = b""
        if json.loads(line or b"{}").get("ready") is not True:
            writer.close()
            proc.kill()
            await proc.wait()
            raise RuntimeError("the cluster launcher did not start (see the gateway's log)")
        self.log.info("Cluster launcher started (pid %d): schedulers and workers fork pre-imported", proc.pid)
        self._dp_zygote = (proc, reader, writer)

    async def _zygote_call(self, req):
        if getattr(self, "_dp_zygote_lock", None) is None:
            self._dp_zygote_lock = asyncio.Lock()
        async with self._dp_zygote_lock:
            for attempt in (1, 2):
                if getattr(self, "_dp_zygote", None) is None:
                    await self._zygote_start()
                _proc, reader, writer = self._dp_zygote
                try:
                    writer.write(json.dumps(req).encode() + b"\n")
                    await writer.drain()
                    line = await reader.readline()
                except (ConnectionError, OSError):
                    line = b""
                if line:
                    return json.loads(line)
                self.log.warning("The cluster launcher went away; starting it again (attempt %d)", attempt)
                await self._zygote_stop()
        raise RuntimeError("the cluster launcher keeps failing")

    async def _zygote_stop(self):
        zygote, self._dp_zygote = getattr(self, "_dp_zygote", None), None
        if zygote is None:
            return
        proc, _reader, writer = zygote
        writer.close()  # the launcher exits when its socket closes; its children stay
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()

    async def start_process(self, cluster, cmd, env, name):
        if not self._zygote_wanted(cmd):
            return await super().start_process(cluster, cmd, env, name)
        uid, gid, groups = self.launch_identity(cluster)
        workdir = cluster.state["workdir"]
        req = {
            "argv": list(cmd),
            "env": env,
            "uid": uid,
            "gid": gid,
            "groups": list(groups),
            "cwd": workdir,
            "log": os.path.join(self.get_logs_directory(workdir), name + ".log"),
        }
        reply = await self._zygote_call(req)
        if "pid" not in reply:
            raise RuntimeError(f"the cluster launcher refused {cmd[:2]}: {reply.get('error')}")
        return reply["pid"]

    async def setup(self, app):
        await super().setup(app)
        if self.launcher == "zygote":
            # Import once now, not on the first user's clock; a failure here is retried on use.
            try:
                await self._zygote_start()
            except Exception as exc:
                self.log.error("Cannot start the cluster launcher yet: %s", exc)

    async def cleanup(self):
        try:
            await super().cleanup()
        finally:
            await self._zygote_stop()


class PlatformLocalBackend(PolicyBackendMixin, LauncherMixin, LocalBackend):
    """LocalBackend fixed: processes run as the user's uid with all their groups.

    Fixes over the stock backend: ``setup_working_directory`` chowns exactly the working
    directory and its files (the stock one extends its list with a path's characters and
    chowns ``/``), supplementary groups come from ``os.getgrouplist`` (sssd), a failed
    ``setgroups`` stops the launch instead of running with root's groups, and system
    accounts never get clusters.
    """

    async def start_cluster(self, user, cluster_options):
        user_identity(user.name, self.min_uid)
        return await super().start_cluster(user, cluster_options)

    def set_file_permissions(self, paths, username):
        pw = pwd.getpwnam(username)
        for p in paths:
            os.chown(p, pw.pw_uid, pw.pw_gid, follow_symlinks=False)

    def make_preexec_fn(self, cluster):
        pw, groups = user_identity(cluster.username, self.min_uid)
        workdir = cluster.state["workdir"]

        def preexec():  # pragma: no cover - runs in the child
            os.setgroups(groups)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os.umask(0o077)
            os.chdir(workdir)

        return preexec

    def get_env(self, cluster):
        env = super().get_env(cluster)
        pw = pwd.getpwnam(cluster.username)
        env.update(HOME=user_home(pw, cluster.state.get("workdir")), USER=cluster.username, LOGNAME=cluster.username)
        return env

    def setup_working_directory(self, cluster):
        if not self.clusters_directory:
            raise PublicException("the gateway has no clusters_directory configured")
        workdir = os.path.join(self.clusters_directory, cluster.name)
        certsdir = self.get_certs_directory(workdir)
        logsdir = self.get_logs_directory(workdir)
        dirs = [workdir, certsdir, logsdir]
        for path in dirs:
            os.makedirs(path, 0o700, exist_ok=True)
            os.chmod(path, 0o700)
        files = []
        cert_path, key_path = self._get_tls_paths(workdir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        for path, data in [(cert_path, cluster.tls_cert), (key_path, cluster.tls_key)]:
            with os.fdopen(os.open(path, flags, 0o600), "wb") as fil:
                fil.write(data)
            files.append(path)
        # Files first, then the directories: root owns the tree until it is complete.
        self.set_file_permissions(files + dirs[::-1], cluster.username)
        self.log.debug("Working directory %s for cluster %s created", workdir, cluster.name)
        return workdir
