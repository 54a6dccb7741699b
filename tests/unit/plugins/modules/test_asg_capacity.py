"""asg_capacity: sizes validated before any call, only differences applied, check mode == real run."""

from __future__ import annotations

import pytest
from asg_fixtures import GROUP, group, make_fleet, run_module

from ansible_collections.dataplatform.dask.plugins.module_utils import asg as asg_utils
from ansible_collections.dataplatform.dask.plugins.modules import asg_capacity


def sizes(client):
    g = group(client)
    return g["MinSize"], g["MaxSize"], g["DesiredCapacity"]


@pytest.mark.parametrize(
    ("min_size", "max_size", "desired", "fragment"),
    [
        (5, 20, 21, "desired_capacity=21 is above max_size=20"),
        (5, 20, 4, "desired_capacity=4 is below min_size=5"),
        (21, 20, None, "min_size=21 is above max_size=20"),
        (-1, 20, None, "min_size=-1 is negative"),
        (None, None, None, None),
        (5, 20, 20, None),
    ],
)
def test_check_bounds(min_size, max_size, desired, fragment):
    error = asg_utils.check_bounds(min_size, max_size, desired)
    if fragment is None:
        assert error is None
    else:
        assert fragment in error


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ({"max_size": 3}, {"min_size": 1, "max_size": 3, "desired_capacity": 3}),  # AWS lowers desired to max
        ({"min_size": 6}, {"min_size": 6, "max_size": 20, "desired_capacity": 6}),  # and raises it to min
        ({"desired_capacity": 7}, {"min_size": 1, "max_size": 20, "desired_capacity": 7}),
    ],
)
def test_compute_sizes_follows_aws_clamping(wanted, expected):
    current = {"min_size": 1, "max_size": 20, "desired_capacity": 4}
    full = {"min_size": None, "max_size": None, "desired_capacity": None, **wanted}
    target, error = asg_capacity.compute_sizes(current, full)
    assert error is None
    assert target == expected


def test_partial_change_is_checked_against_current_sizes():
    current = {"min_size": 1, "max_size": 20, "desired_capacity": 4}
    _target, error = asg_capacity.compute_sizes(current, {"min_size": None, "max_size": None, "desired_capacity": 25})
    assert "desired_capacity=25 is above max_size=20" in error
    assert "the group now has min_size=1, max_size=20, desired_capacity=4" in error


@pytest.mark.parametrize("check", [True, False])
def test_resize_check_then_apply_then_idempotent(capsys, check):
    client, _ec2, _lt = make_fleet(size=4)
    args = {"name": GROUP, "min_size": 5, "max_size": 20, "desired_capacity": 6}
    first = run_module(asg_capacity, args, capsys, check=check, diff=True)
    assert first["changed"] is True
    assert first["capacity"] == {"min_size": 5, "max_size": 20, "desired_capacity": 6, "suspended_processes": []}
    assert first["diff"]["before"]["desired_capacity"] == 4
    assert first["diff"]["after"]["desired_capacity"] == 6
    assert sizes(client) == ((1, 20, 4) if check else (5, 20, 6))
    if not check:
        assert len(group(client)["Instances"]) == 6
        again = run_module(asg_capacity, args, capsys)
        assert again["changed"] is False
        again_check = run_module(asg_capacity, args, capsys, check=True)
        assert again_check["changed"] is False


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"desired_capacity": 25}, "desired_capacity=25 is above max_size=20"),
        ({"min_size": 5, "max_size": 4}, "min_size=5 is above max_size=4"),
        ({"max_size": 3, "desired_capacity": 4}, "desired_capacity=4 is above max_size=3"),
        ({"suspend_processes": ["Launch"], "resume_processes": ["Launch"]}, "Launch listed in both"),
    ],
)
def test_bad_input_fails_and_changes_nothing(capsys, args, fragment):
    client, _ec2, _lt = make_fleet(size=4)
    before = group(client)
    result = run_module(asg_capacity, {"name": GROUP, **args}, capsys)
    assert result.failed
    assert fragment in result["msg"]
    assert GROUP in result["msg"]
    after = group(client)
    assert (after["MinSize"], after["MaxSize"], after["DesiredCapacity"]) == (
        before["MinSize"],
        before["MaxSize"],
        before["DesiredCapacity"],
    )
    assert after["SuspendedProcesses"] == before["SuspendedProcesses"]


def test_unknown_group_fails_with_its_name(capsys):
    result = run_module(asg_capacity, {"name": "nope", "desired_capacity": 2}, capsys)
    assert result.failed
    assert "ASG nope not found" in result["msg"]


@pytest.mark.parametrize("check", [True, False])
def test_suspend_and_resume_only_named_processes(capsys, check):
    client, _ec2, _lt = make_fleet(size=2)
    client.suspend_processes(AutoScalingGroupName=GROUP, ScalingProcesses=["ScheduledActions"])
    args = {"name": GROUP, "suspend_processes": ["AlarmNotification", "AZRebalance"]}
    result = run_module(asg_capacity, args, capsys, check=check, diff=True)
    assert result["changed"] is True
    assert result["capacity"]["suspended_processes"] == ["AZRebalance", "AlarmNotification", "ScheduledActions"]
    assert result["diff"]["before"]["suspended_processes"] == ["ScheduledActions"]
    live = sorted(p["ProcessName"] for p in group(client)["SuspendedProcesses"])
    if check:
        assert live == ["ScheduledActions"]
        return
    assert live == ["AZRebalance", "AlarmNotification", "ScheduledActions"]
    assert run_module(asg_capacity, args, capsys)["changed"] is False
    resume = {"name": GROUP, "resume_processes": ["AlarmNotification", "Launch"]}
    predicted = run_module(asg_capacity, resume, capsys, check=True)
    applied = run_module(asg_capacity, resume, capsys)
    assert predicted["changed"] is applied["changed"] is True
    assert applied["capacity"]["suspended_processes"] == ["AZRebalance", "ScheduledActions"]
    assert sorted(p["ProcessName"] for p in group(client)["SuspendedProcesses"]) == ["AZRebalance", "ScheduledActions"]
    assert run_module(asg_capacity, resume, capsys)["changed"] is False


def test_wait_for_in_service(capsys):
    client, _ec2, _lt = make_fleet(size=2)
    result = run_module(
        asg_capacity,
        {"name": GROUP, "desired_capacity": 5, "wait": True, "wait_timeout": 10, "wait_delay": 1},
        capsys,
    )
    assert result["changed"] is True
    assert len([i for i in group(client)["Instances"] if i["LifecycleState"] == "InService"]) == 5
