# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who may use the platform and how much: groups -> limits, per-user quotas.

Pure functions and small classes with no dask-gateway import, so the authenticator,
any backend (local processes today, the worker fleet later) and the unit tests share
them. Every message here is shown to users: it names the rule and the number.
"""

from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass
from typing import NamedTuple

GIB = 1024**3

# The user of the request being handled, set by the authenticator. Backends read it
# to widen listings for admins (dask-gateway passes them only a user name).
CURRENT_USER: contextvars.ContextVar = contextvars.ContextVar("dataplatform_gateway_user", default=None)


# Memory sizes go through bytes and back; compare with a little slack.
EPSILON_GB = 1e-6


class Usage(NamedTuple):
    """What a user holds or asks for, summed over clusters."""

    cores: float
    memory_gb: float


class Refused(Exception):
    """A request the platform's rules refuse; str() is the message for the user."""


@dataclass(frozen=True)
class Limits:
    """What one platform group grants, per cluster."""

    group: str
    cluster_max_cores: float
    cluster_max_memory_gb: float
    worker_max_cores: int
    worker_max_memory_gb: float


DEFAULT_SETTINGS = {
    "groups": {
        "data_engineers": {
            "cluster_max_cores": 4,
            "cluster_max_memory_gb": 8,
            "worker_max_cores": 4,
            "worker_max_memory_gb": 8,
        },
        "data_analysts": {
            "cluster_max_cores": 2,
            "cluster_max_memory_gb": 4,
            "worker_max_cores": 1,
            "worker_max_memory_gb": 2,
        },
        "admins": {
            "cluster_max_cores": 4,
            "cluster_max_memory_gb": 8,
            "worker_max_cores": 4,
            "worker_max_memory_gb": 8,
        },
    },
    "admin_groups": ["admins"],
    "max_clusters_per_user": 2,
    "fleet_cores": 16,
    "user_max_core_fraction": 0.25,
    "fleet_memory_gb": 64,
    "user_max_memory_fraction": 0.25,
    "idle_timeout": 7200,
    "worker_cores": 1,
    "worker_memory_gb": 2,
    "scheduler_cores": 1,
    "scheduler_memory_gb": 1,
}


def merged_settings(settings: dict | None) -> dict:
    out = dict(DEFAULT_SETTINGS)
    out.update(settings or {})
    return out


class Policy:
    """The platform's rules, built from the gateway settings file."""

    def __init__(self, settings: dict | None = None):
        s = merged_settings(settings)
        self.settings = s
        self.groups = {
            name: Limits(
                group=name,
                cluster_max_cores=float(v["cluster_max_cores"]),
                cluster_max_memory_gb=float(v["cluster_max_memory_gb"]),
                worker_max_cores=int(v["worker_max_cores"]),
                worker_max_memory_gb=float(v["worker_max_memory_gb"]),
            )
            for name, v in s["groups"].items()
        }
        self.admin_groups = frozenset(s["admin_groups"])
        self.max_clusters_per_user = int(s["max_clusters_per_user"])
        self.fleet_cores = int(s["fleet_cores"])
        self.user_max_core_fraction = float(s["user_max_core_fraction"])
        self.fleet_memory_gb = float(s["fleet_memory_gb"])
        self.user_max_memory_fraction = float(s["user_max_memory_fraction"])
        self.idle_timeout = float(s["idle_timeout"])
        self.worker_cores = int(s["worker_cores"])
        self.worker_memory_gb = float(s["worker_memory_gb"])
        self.scheduler_cores = int(s["scheduler_cores"])
        self.scheduler_memory_gb = float(s["scheduler_memory_gb"])

    # -- admission ------------------------------------------------------------
    def limits_for(self, username: str, groups) -> Limits:
        """The most generous limits among the user's platform groups, or Refused."""
        mine = [self.groups[g] for g in sorted(set(groups)) if g in self.groups]
        if not mine:
            raise Refused(
                f"user {username} is in none of the Dask platform groups ({', '.join(sorted(self.groups))}); "
                "ask an administrator to add you to one"
            )
        return Limits(
            group="+".join(limit.group for limit in mine),
            cluster_max_cores=max(limit.cluster_max_cores for limit in mine),
            cluster_max_memory_gb=max(limit.cluster_max_memory_gb for limit in mine),
            worker_max_cores=max(limit.worker_max_cores for limit in mine),
            worker_max_memory_gb=max(limit.worker_max_memory_gb for limit in mine),
        )

    def is_admin(self, groups) -> bool:
        return bool(self.admin_groups.intersection(groups))

    # -- per cluster ----------------------------------------------------------
    def cluster_config(self, username: str, groups, worker_cores=None, worker_memory_gb=None) -> dict:
        """ClusterConfig overrides for one new cluster; Refused names the quota."""
        limits = self.limits_for(username, groups)
        cores = int(worker_cores if worker_cores is not None else min(self.worker_cores, limits.worker_max_cores))
        memory = float(
            worker_memory_gb
            if worker_memory_gb is not None
            else min(self.worker_memory_gb, limits.worker_max_memory_gb)
        )
        if cores < 1:
            raise Refused(f"worker_cores must be at least 1 (asked {cores})")
        if memory <= 0:
            raise Refused(f"worker_memory must be positive (asked {memory:g} GB)")
        if cores > limits.worker_max_cores:
            raise Refused(
                f"worker_cores={cores} exceeds the {limits.group} quota of {limits.worker_max_cores} cores per worker"
            )
        if memory > limits.worker_max_memory_gb:
            raise Refused(
                f"worker_memory={memory:g} GB exceeds the {limits.group} quota of "
                f"{limits.worker_max_memory_gb:g} GB per worker"
            )
        if (
            self.scheduler_cores + cores > limits.cluster_max_cores
            or self.scheduler_memory_gb + memory > limits.cluster_max_memory_gb
        ):
            raise Refused(
                f"a scheduler and one worker of {cores} cores / {memory:g} GB exceed the {limits.group} quota of "
                f"{limits.cluster_max_cores:g} cores / {limits.cluster_max_memory_gb:g} GB per cluster"
            )
        return {
            "worker_cores": cores,
            "worker_memory": int(memory * GIB),
            "scheduler_cores": self.scheduler_cores,
            "scheduler_memory": int(self.scheduler_memory_gb * GIB),
            "cluster_max_cores": limits.cluster_max_cores,
            "cluster_max_memory": int(limits.cluster_max_memory_gb * GIB),
            "idle_timeout": self.idle_timeout,
        }

    # -- per user, across clusters -------------------------------------------
    @property
    def user_max_cores(self) -> int:
        return math.floor(self.fleet_cores * self.user_max_core_fraction)

    @property
    def user_max_memory_gb(self) -> float:
        return self.fleet_memory_gb * self.user_max_memory_fraction

    def check_new_cluster(self, username: str, active_clusters: int, in_use: Usage, new_cluster: Usage) -> None:
        """Refuse a new cluster past the per-user cluster count, core share or memory share."""
        if active_clusters >= self.max_clusters_per_user:
            raise Refused(
                f"user {username} already runs {active_clusters} clusters; "
                f"the quota is {self.max_clusters_per_user} clusters per user: "
                "shut one down first"
            )
        self._check_share(username, in_use, new_cluster)

    def allowed_workers(self, username: str, requested: int, base: Usage, worker: Usage, elsewhere: Usage) -> int:
        """Workers one cluster (``base``: its scheduler) may have given the user's other clusters."""
        by_cores = (self.user_max_cores - elsewhere.cores - base.cores) // worker.cores
        by_memory = (self.user_max_memory_gb - elsewhere.memory_gb - base.memory_gb + EPSILON_GB) // worker.memory_gb
        return max(0, min(int(requested), int(by_cores), int(by_memory)))

    def check_scale(self, username: str, requested: int, base: Usage, worker: Usage, elsewhere: Usage) -> None:
        allowed = self.allowed_workers(username, requested, base, worker, elsewhere)
        if allowed < requested:
            asked = Usage(base.cores + requested * worker.cores, base.memory_gb + requested * worker.memory_gb)
            try:
                self._check_share(username, elsewhere, asked)
            except Refused as exc:
                raise Refused(f"{exc}; this cluster may have at most {allowed} workers") from None
            raise Refused(f"user {username}'s share of the fleet allows this cluster at most {allowed} workers")

    def _check_share(self, username: str, in_use: Usage, asked: Usage) -> None:
        if in_use.cores + asked.cores > self.user_max_cores:
            raise Refused(
                f"user {username} would use {in_use.cores + asked.cores:g} cores; the quota is "
                f"{self.user_max_cores} cores per user ({self.user_max_core_fraction:.0%} of the "
                f"{self.fleet_cores}-core fleet), {in_use.cores:g} already in use"
            )
        if in_use.memory_gb + asked.memory_gb > self.user_max_memory_gb + EPSILON_GB:
            raise Refused(
                f"user {username} would use {in_use.memory_gb + asked.memory_gb:g} GB of memory; the quota is "
                f"{self.user_max_memory_gb:g} GB per user ({self.user_max_memory_fraction:.0%} of the "
                f"{self.fleet_memory_gb:g} GB fleet), {in_use.memory_gb:g} GB already in use"
            )


def cluster_usage(config: dict, workers: int) -> Usage:
    """Cores and memory a cluster holds: its scheduler plus its target number of workers."""
    return Usage(
        float(config.get("scheduler_cores", 1)) + workers * float(config.get("worker_cores", 1)),
        (float(config.get("scheduler_memory", GIB)) + workers * float(config.get("worker_memory", 2 * GIB))) / GIB,
    )


def scheduler_usage(config: dict) -> Usage:
    return cluster_usage(config, 0)


def worker_usage(config: dict) -> Usage:
    return Usage(float(config.get("worker_cores", 1)), float(config.get("worker_memory", 2 * GIB)) / GIB)


class LazyPolicy:
    """The ``policy`` attribute of the gateway's authenticator and backends: the Policy built once,
    at first use, from the owner's ``policy_settings`` (its traitlet, set by the gateway's config)."""

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        if getattr(obj, "_dp_policy", None) is None:
            obj._dp_policy = Policy(obj.policy_settings)
        return obj._dp_policy
