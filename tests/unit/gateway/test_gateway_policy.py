"""Groups -> access levels and quotas; per-user cluster count and core share; user-facing messages."""

from __future__ import annotations

import pytest
from dataplatform_gateway.policy import GIB, Policy, Refused, cluster_cores

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


def test_cluster_count_per_user(policy):
    policy.check_new_cluster("alice", 1, 1, 1)
    with pytest.raises(Refused, match="quota is 2 clusters per user"):
        policy.check_new_cluster("alice", 2, 2, 1)


def test_core_share_refuses_a_new_cluster(policy):
    with pytest.raises(Refused, match=r"quota is 4 cores per user \(25% of the 16-core fleet\)"):
        policy.check_new_cluster("alice", 1, 4, 1)


def test_scaling_is_capped_by_the_cores_held_elsewhere(policy):
    # 4 cores per user: 1 scheduler here, 2 cores in another cluster -> 1 worker left.
    assert policy.allowed_workers("alice", 5, 1, 1, 2) == 1
    assert policy.allowed_workers("alice", 5, 1, 1, 0) == 3
    assert policy.allowed_workers("alice", 5, 1, 2, 0) == 1
    assert policy.allowed_workers("alice", 5, 1, 1, 4) == 0
    with pytest.raises(Refused, match="at most 1 workers"):
        policy.check_scale("alice", 2, 1, 1, 2)
    policy.check_scale("alice", 1, 1, 1, 2)


def test_cluster_cores_counts_the_scheduler():
    assert cluster_cores({"scheduler_cores": 1, "worker_cores": 2}, 3) == 7
