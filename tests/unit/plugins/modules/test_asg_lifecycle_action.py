"""asg_lifecycle_action: complete waiting actions only, refuse unknown/not-waiting instances before any change."""

from __future__ import annotations

import boto3
import pytest
from asg_fixtures import GROUP, HOOK, REGION, group, instance_ids, make_fleet, new_version, run_module
from tests.peers.moto_fleet import image_ids

from ansible_collections.dataplatform.dask.plugins.module_utils.asg import AsgError
from ansible_collections.dataplatform.dask.plugins.modules import asg_lifecycle_action

TERMINATING = {"LifecycleHookName": HOOK, "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING"}


def states(client):
    return {i["InstanceId"]: i["LifecycleState"] for i in group(client)["Instances"]}


def hold_two_for_retirement(client, ec2, lt):
    """Start a refresh so that two instances wait in Terminating:Wait on the hook."""
    version = new_version(ec2, lt, image_ids(ec2, 2)[1])
    client.start_instance_refresh(
        AutoScalingGroupName=GROUP,
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"], "Version": str(version)}},
        Preferences={"MinHealthyPercentage": 50, "SkipMatching": True},
    )
    for _attempt in range(2):
        client.describe_instance_refreshes(AutoScalingGroupName=GROUP)
    waiting = instance_ids(client, state="Terminating:Wait")
    assert len(waiting) == 2
    return waiting


@pytest.mark.parametrize(
    ("instances", "known", "expected"),
    [
        ([{"instance_id": "i-1", "lifecycle_state": "Terminating:Wait"}], {}, (["i-1"], [])),
        ([{"instance_id": "i-1", "lifecycle_state": "Terminating:Proceed"}], {}, ([], ["i-1"])),
        ([], {"i-1": "terminated"}, ([], ["i-1"])),
    ],
)
def test_plan_completion(instances, known, expected):
    assert asg_lifecycle_action.plan_completion(instances, ["i-1"], TERMINATING, known, GROUP) == expected


@pytest.mark.parametrize(
    ("instances", "known", "fragment"),
    [
        ([{"instance_id": "i-1", "lifecycle_state": "InService"}], {}, "i-1 is InService, not Terminating:Wait"),
        ([], {"i-1": "running"}, "i-1 is not in the group (EC2 state running)"),
        ([], {}, "i-1 is not a known instance"),
    ],
)
def test_plan_completion_refuses(instances, known, fragment):
    with pytest.raises(AsgError) as err:
        asg_lifecycle_action.plan_completion(instances, ["i-1"], TERMINATING, known, GROUP)
    assert fragment in str(err.value)
    assert "nothing was completed" in str(err.value)


def test_complete_check_apply_check_apply(capsys):
    client, ec2, lt = make_fleet(size=4, hook=True)
    waiting = hold_two_for_retirement(client, ec2, lt)
    args = {"name": GROUP, "lifecycle_hook_name": HOOK, "instance_ids": waiting}

    check = run_module(asg_lifecycle_action, args, capsys, check=True, diff=True)
    assert check["changed"] is True
    assert check["completed"] == waiting
    assert check["diff"]["after"] == dict.fromkeys(waiting, "Terminating:Proceed")
    assert all(states(client)[i] == "Terminating:Wait" for i in waiting)

    applied = run_module(asg_lifecycle_action, args, capsys)
    assert applied["changed"] is True
    assert all(states(client)[i] == "Terminating:Proceed" for i in waiting)

    assert run_module(asg_lifecycle_action, args, capsys, check=True)["changed"] is False
    # The refresh moves on: the instances terminate and leave the group; still "already done".
    client.describe_instance_refreshes(AutoScalingGroupName=GROUP)
    assert not set(waiting) & set(instance_ids(client))
    again = run_module(asg_lifecycle_action, args, capsys)
    assert again["changed"] is False
    assert again["already_done"] == waiting


def test_in_service_and_unknown_instances_are_refused_before_any_completion(capsys):
    client, ec2, lt = make_fleet(size=4, hook=True)
    waiting = hold_two_for_retirement(client, ec2, lt)
    serving = instance_ids(client, state="InService")[0]
    result = run_module(
        asg_lifecycle_action,
        {"name": GROUP, "lifecycle_hook_name": HOOK, "instance_ids": [waiting[0], serving, "i-00000000000000bad"]},
        capsys,
    )
    assert result.failed
    assert f"{serving} is InService" in result["msg"]
    assert "i-00000000000000bad is not a known instance" in result["msg"]
    assert all(states(client)[i] == "Terminating:Wait" for i in waiting)


def test_unknown_hook(capsys):
    client, _ec2, _lt = make_fleet(size=1, hook=True)
    result = run_module(
        asg_lifecycle_action,
        {"name": GROUP, "lifecycle_hook_name": "other", "instance_ids": instance_ids(client)},
        capsys,
    )
    assert result.failed
    assert "lifecycle hook other not found on the group" in result["msg"]


def test_instance_outside_group_but_running(capsys):
    make_fleet(size=1, hook=True)
    ec2 = boto3.client("ec2", region_name=REGION)
    lone = ec2.run_instances(ImageId=image_ids(ec2, 1)[0], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    result = run_module(
        asg_lifecycle_action, {"name": GROUP, "lifecycle_hook_name": HOOK, "instance_ids": [lone]}, capsys
    )
    assert result.failed
    assert f"{lone} is not in the group (EC2 state running)" in result["msg"]
