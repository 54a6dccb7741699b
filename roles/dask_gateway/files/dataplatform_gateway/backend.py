# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backends: the platform's quotas as a mixin, and a LocalBackend that runs clusters as their user.

``PolicyBackendMixin`` uses only dask-gateway's public Backend API (list_clusters,
start_cluster, forward_message_to_scheduler, on_cluster_heartbeat), so a backend that spreads
clusters over the worker fleet takes it unchanged: ``class FleetBackend(PolicyBackendMixin, ...)``.
"""

from __future__ import annotations

import asyncio
import os
import pwd

from dask_gateway_server.backends.base import Backend, PublicException
from dask_gateway_server.backends.local import LocalBackend
from dask_gateway_server.models import ClusterStatus
from dask_gateway_server.options import Float, Integer, Options
from traitlets import Bool, Dict, default
from traitlets import Integer as IntegerTrait

from .policy import CURRENT_USER, Policy, Refused, Usage, cluster_usage, scheduler_usage, worker_usage

ACTIVE = [ClusterStatus.PENDING, ClusterStatus.RUNNING]


class PolicyBackendMixin(Backend):
    """Per-group cluster sizes, per-user cluster count and core and memory share, admin listings."""

    policy_settings = Dict(help="The platform policy (dataplatform_gateway.policy.Policy settings).", config=True)

    @property
    def policy(self) -> Policy:
        if getattr(self, "_dp_policy", None) is None:
            self._dp_policy = Policy(self.policy_settings)
        return self._dp_policy

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
            name = await super().start_cluster(user, cluster_options)
            self._targets[name] = 0
            return name

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


class PlatformLocalBackend(PolicyBackendMixin, LocalBackend):
    """LocalBackend fixed: processes run as the user's uid with all their groups.

    Fixes over the stock backend: ``setup_working_directory`` chowns exactly the working
    directory and its files (the stock one extends its list with a path's characters and
    chowns ``/``), supplementary groups come from ``os.getgrouplist`` (sssd), a failed
    ``setgroups`` stops the launch instead of running with root's groups, and system
    accounts never get clusters.
    """

    min_uid = IntegerTrait(1000, help="Lowest uid that may own a cluster.", config=True)

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
