"""asg_scaling_policy: policy + alarms created once, compared field by field, metric math included."""

from __future__ import annotations

import boto3
import pytest
from asg_fixtures import GROUP, REGION, make_fleet, run_module

from ansible_collections.dataplatform.dask.plugins.modules import asg_scaling_policy

QUEUE = {"namespace": "Dask/Cluster", "name": "QueuedTasks", "dimensions": {"ClusterName": "prod"}}
CPU = {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"AutoScalingGroupName": GROUP}}
DOWN = {
    "name": "dask-idle",
    "comparison": "GreaterThanOrEqualToThreshold",
    "threshold": 1,
    "expression": "IF(q < 2 AND cpu < 30, 1, 0)",
    "metrics": {"q": QUEUE, "cpu": CPU},
    "treat_missing_data": "notBreaching",
}
UP = [
    {"name": "dask-queue-high", "comparison": "GreaterThanThreshold", "threshold": 10, "metric": QUEUE},
    {"name": "dask-cpu-high", "comparison": "GreaterThanThreshold", "threshold": 70, "metric": CPU},
]


def alarms():
    cw = boto3.client("cloudwatch", region_name=REGION)
    return {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}


def policies(client):
    return {p["PolicyName"]: p for p in client.describe_policies(AutoScalingGroupName=GROUP)["ScalingPolicies"]}


@pytest.mark.parametrize(
    ("alarm_list", "fragment"),
    [
        ([dict(UP[0], expression="q")], "give exactly one of metric and expression"),
        ([{k: v for k, v in DOWN.items() if k != "metrics"}], "expression needs metrics"),
        ([dict(UP[0], metric={"namespace": "x"})], "alarm dask-queue-high metric needs name"),
        ([dict(UP[0], metric=dict(QUEUE, unit="Count"))], "unknown key(s) unit"),
        ([UP[0], UP[0]], "dask-queue-high listed twice"),
    ],
)
def test_validate_alarms(alarm_list, fragment):
    full = [dict({"expression": None, "metric": None, "metrics": None}, **a) for a in alarm_list]
    assert fragment in asg_scaling_policy.validate_alarms(full)


def test_up_and_down_policies_check_apply_check_apply(capsys):
    client, _ec2, _lt = make_fleet(size=2)
    up = {"name": GROUP, "policy_name": "up", "scaling_adjustment": 2, "cooldown": 300, "alarms": UP}
    down = {"name": GROUP, "policy_name": "down", "scaling_adjustment": -1, "cooldown": 300, "alarms": [DOWN]}
    for args, names in ((up, ["dask-cpu-high", "dask-queue-high"]), (down, ["dask-idle"])):
        check = run_module(asg_scaling_policy, args, capsys, check=True, diff=True)
        assert check["changed"] is True
        assert sorted(check["changed_alarms"]) == names
        assert check["diff"]["before"] == {"policy": None, "alarms": []}
        assert args["policy_name"] not in policies(client)
        applied = run_module(asg_scaling_policy, args, capsys)
        assert applied["changed"] is True
        assert applied["policy"]["arn"] == policies(client)[args["policy_name"]]["PolicyARN"]
        assert run_module(asg_scaling_policy, args, capsys, check=True)["changed"] is False
        assert run_module(asg_scaling_policy, args, capsys)["changed"] is False

    live = alarms()
    assert live["dask-queue-high"]["Threshold"] == 10.0
    assert live["dask-queue-high"]["Dimensions"] == [{"Name": "ClusterName", "Value": "prod"}]
    assert live["dask-queue-high"]["AlarmActions"] == [policies(client)["up"]["PolicyARN"]]
    assert live["dask-idle"]["AlarmActions"] == [policies(client)["down"]["PolicyARN"]]
    expression = next(m for m in live["dask-idle"]["Metrics"] if "Expression" in m)
    assert expression["Expression"] == "IF(q < 2 AND cpu < 30, 1, 0)"
    assert policies(client)["up"]["Cooldown"] == 300
    assert policies(client)["down"]["ScalingAdjustment"] == -1


def test_changed_threshold_is_updated_alone(capsys):
    make_fleet(size=1)
    args = {"name": GROUP, "policy_name": "up", "scaling_adjustment": 1, "alarms": UP}
    run_module(asg_scaling_policy, args, capsys)
    moved = dict(args, alarms=[dict(UP[0], threshold=20), UP[1]])
    result = run_module(asg_scaling_policy, moved, capsys, diff=True)
    assert result["changed"] is True
    assert result["changed_alarms"] == ["dask-queue-high"]
    assert alarms()["dask-queue-high"]["Threshold"] == 20.0


def test_absent_removes_alarms_and_policy(capsys):
    client, _ec2, _lt = make_fleet(size=1)
    args = {"name": GROUP, "policy_name": "up", "scaling_adjustment": 1, "alarms": UP}
    run_module(asg_scaling_policy, args, capsys)
    gone = dict(args, state="absent")
    assert run_module(asg_scaling_policy, gone, capsys, check=True)["changed"] is True
    assert "up" in policies(client)
    result = run_module(asg_scaling_policy, gone, capsys)
    assert result["changed"] is True
    assert "up" not in policies(client)
    assert alarms() == {}
    assert run_module(asg_scaling_policy, gone, capsys)["changed"] is False


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"scaling_adjustment": 0}, "scaling_adjustment=0 would never change the group"),
        ({"scaling_adjustment": 1, "cooldown": -5}, "cooldown=-5 must be >= 0"),
        ({"scaling_adjustment": 1, "alarms": [dict(UP[0], expression="q")]}, "give exactly one of metric"),
    ],
)
def test_bad_input_changes_nothing(capsys, args, fragment):
    client, _ec2, _lt = make_fleet(size=1)
    result = run_module(asg_scaling_policy, {"name": GROUP, "policy_name": "up", **args}, capsys)
    assert result.failed
    assert fragment in result["msg"]
    assert f"on ASG {GROUP}" in result["msg"]
    assert policies(client) == {}
    assert alarms() == {}


def test_unknown_group(capsys):
    result = run_module(asg_scaling_policy, {"name": "ghost", "policy_name": "up", "scaling_adjustment": 1}, capsys)
    assert result.failed
    assert "ASG ghost not found" in result["msg"]
