"""Groups -> access levels and quotas; per-user cluster count, core and memory share; user-facing messages."""

from __future__ import annotations

import pytest
from dataplatform_dask.gateway.policy import GIB, Policy, Refused, Usage, cluster_usage, scheduler_usage, worker_usage

SETTINGS = {"fleet_cores": 16, "user_max_core_fraction": 0.25, "max_clusters_per_user": 2}


@pytest.fixture
def policy() -> Policy:
    return Policy(SETTINGS)


def test_engineers_get_four_cores_and_eight_gb_per_cluster(policy):
    limits = policy.limits_for("alice", ["ipausers", "data_engineers", "dask_users"])
    assert (limits.cluster_max_cores, limits.cluster_max_memory_gb) == (4, 8)
    cfg = policy.cluster_config("alice", ["data_engineers"])
    assert cfg["cluster_max_cores"] == 4
    assert cfg["cluster_max_memory"] == 8 * GIB
    assert cfg["worker_cores"] == 1
    assert cfg["idle_timeout"] == 7200


def test_analysts_get_less(policy):
    eng = policy.limits_for("alice", ["data_engineers"])
    ana = policy.limits_for("bob", ["data_analysts"])
    assert ana.cluster_max_cores < eng.cluster_max_cores
    assert ana.cluster_max_memory_gb < eng.cluster_max_memory_gb


@pytest.mark.parametrize("groups", [[], ["ipausers"], ["dask_users"], ["DATA_ENGINEERS"]])
def test_a_user_in_no_platform_group_is_refused_with_the_reason(policy, groups):
    with pytest.raises(Refused) as exc:
        policy.limits_for("carol", groups)
    msg = str(exc.value)
    assert "carol" in msg
    assert "none of the Dask platform groups" in msg
    assert "data_engineers" in msg and "data_analysts" in msg


def test_several_groups_give_the_most_generous_limits(policy):
    limits = policy.limits_for("erin", ["data_analysts", "data_engineers"])
    assert limits.cluster_max_cores == 4
    assert limits.group == "data_analysts+data_engineers"


def test_admins_are_recognised(policy):
    assert policy.is_admin(["admins", "ipausers"])
    assert not policy.is_admin(["data_engineers"])


@pytest.mark.parametrize(
    ("cores", "memory", "quota"),
    [
        (2, None, "data_analysts quota of 1 cores per worker"),
        (None, 3, "data_analysts quota of 2 GB per worker"),
        (1, 3.5, "data_analysts quota of 2 GB"),
    ],
)
def test_asking_beyond_the_group_quota_is_refused_and_names_it(policy, cores, memory, quota):
    with pytest.raises(Refused, match=quota):
        policy.cluster_config("bob", ["data_analysts"], cores, memory)


@pytest.mark.parametrize(("cores", "memory"), [(0, 1), (1, 0), (-1, 1)])
def test_nonsense_sizes_are_refused(policy, cores, memory):
    with pytest.raises(Refused):
        policy.cluster_config("alice", ["data_engineers"], cores, memory)


def test_a_worker_that_cannot_fit_beside_the_scheduler_is_refused():
    p = Policy(
        {
            "groups": {
                "tiny": {
                    "cluster_max_cores": 1,
                    "cluster_max_memory_gb": 8,
                    "worker_max_cores": 1,
                    "worker_max_memory_gb": 2,
                }
            }
        }
    )
    with pytest.raises(Refused, match="per cluster"):
        p.cluster_config("x", ["tiny"])


def test_user_core_share_is_a_quarter_of_the_fleet(policy):
    assert policy.user_max_cores == 4
    assert Policy({"fleet_cores": 10}).user_max_cores == 2


def test_user_memory_share_is_a_quarter_of_the_fleet(policy):
    assert policy.user_max_memory_gb == 16
    assert Policy({"fleet_memory_gb": 10}).user_max_memory_gb == 2.5


def test_cluster_count_per_user(policy):
    policy.check_new_cluster("alice", 1, Usage(1, 1), Usage(1, 1))
    with pytest.raises(Refused, match="quota is 2 clusters per user"):
        policy.check_new_cluster("alice", 2, Usage(2, 2), Usage(1, 1))


def test_core_share_refuses_a_new_cluster(policy):
    with pytest.raises(Refused, match=r"quota is 4 cores per user \(25% of the 16-core fleet\)"):
        policy.check_new_cluster("alice", 1, Usage(4, 4), Usage(1, 1))


def test_memory_share_refuses_a_new_cluster():
    p = Policy({"fleet_cores": 100, "fleet_memory_gb": 20})  # 5 GB per user
    p.check_new_cluster("alice", 1, Usage(2, 4), Usage(1, 1))
    with pytest.raises(Refused) as exc:
        p.check_new_cluster("alice", 1, Usage(2, 4.5), Usage(1, 1))
    assert str(exc.value) == (
        "user alice would use 5.5 GB of memory; the quota is 5 GB per user (25% of the 20 GB fleet), "
        "4.5 GB already in use"
    )


def test_scaling_is_capped_by_the_cores_held_elsewhere(policy):
    # 4 cores per user: 1 scheduler here, 2 cores in another cluster -> 1 worker left.
    sched, one = Usage(1, 1), Usage(1, 2)
    assert policy.allowed_workers("alice", 5, sched, one, Usage(2, 0)) == 1
    assert policy.allowed_workers("alice", 5, sched, one, Usage(0, 0)) == 3
    assert policy.allowed_workers("alice", 5, sched, Usage(2, 2), Usage(0, 0)) == 1
    assert policy.allowed_workers("alice", 5, sched, one, Usage(4, 0)) == 0
    with pytest.raises(Refused, match="at most 1 workers"):
        policy.check_scale("alice", 2, sched, one, Usage(2, 0))
    policy.check_scale("alice", 1, sched, one, Usage(2, 0))


def test_scaling_is_capped_by_the_memory_held_elsewhere():
    # 100 cores but 12 GB per user: 1 GB scheduler, 4 GB elsewhere, 3 GB workers -> 2 workers.
    p = Policy({"fleet_cores": 400, "fleet_memory_gb": 48})
    sched, worker = Usage(1, 1), Usage(1, 3)
    assert p.allowed_workers("alice", 10, sched, worker, Usage(1, 4)) == 2
    assert p.allowed_workers("alice", 10, sched, worker, Usage(1, 12)) == 0
    with pytest.raises(Refused) as exc:
        p.check_scale("alice", 3, sched, worker, Usage(1, 4))
    assert "would use 14 GB of memory; the quota is 12 GB per user (25% of the 48 GB fleet)" in str(exc.value)
    assert "at most 2 workers" in str(exc.value)
    p.check_scale("alice", 2, sched, worker, Usage(1, 4))


def test_fractional_gigabytes_fit_exactly():
    # 3 workers of 1.1 GB and a 0.7 GB scheduler fill a 4 GB share to the byte.
    p = Policy({"fleet_cores": 400, "fleet_memory_gb": 16})
    assert p.allowed_workers("alice", 9, Usage(1, 0.7), Usage(1, 1.1), Usage(0, 0)) == 3


def test_cluster_usage_counts_the_scheduler():
    config = {"scheduler_cores": 1, "worker_cores": 2, "scheduler_memory": GIB, "worker_memory": 3 * GIB}
    assert cluster_usage(config, 3) == Usage(7, 10)
    assert scheduler_usage(config) == Usage(1, 1)
    assert worker_usage(config) == Usage(2, 3)
