"""The moto extension behaves like the AWS APIs it stands in for (tests/peers/moto_ext.py)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.peers.moto_fleet import image_ids
from tests.unit.plugins.modules.asg_fixtures import (
    GROUP,
    HOOK,
    REGION,
    group,
    instance_ids,
    make_fleet,
    new_version,
)


@pytest.fixture(autouse=True)
def aws(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def poll(client):
    return client.describe_instance_refreshes(AutoScalingGroupName=GROUP)["InstanceRefreshes"][0]


def test_refresh_batches_follow_min_healthy_and_checkpoints():
    client, ec2, lt = make_fleet(size=4)
    version = new_version(ec2, lt, image_ids(ec2, 2)[1])
    client.start_instance_refresh(
        AutoScalingGroupName=GROUP,
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"], "Version": str(version)}},
        Preferences={"MinHealthyPercentage": 75, "SkipMatching": True, "CheckpointPercentages": [50, 100]},
    )
    seen = []
    for _attempt in range(20):
        refresh = poll(client)
        seen.append((refresh["Status"], refresh["PercentageComplete"], refresh.get("StatusReason", "")))
        if refresh["Status"] == "Successful":
            break
    # One instance per batch (75 % of 4 must stay healthy) and one pause at the 50 % checkpoint.
    assert [p for s, p, _reason in seen if s == "InProgress"] == [0, 25, 50, 50, 75, 100]
    assert any("checkpoint at 50%" in r for _status, _percent, r in seen)
    assert seen[-1][:2] == ("Successful", 100)
    assert {i["LaunchTemplate"]["Version"] for i in group(client)["Instances"]} == {str(version)}


def test_protected_instances_are_skipped_unless_asked():
    client, ec2, lt = make_fleet(size=2)
    keep = instance_ids(client)[0]
    client.set_instance_protection(AutoScalingGroupName=GROUP, InstanceIds=[keep], ProtectedFromScaleIn=True)
    version = new_version(ec2, lt, image_ids(ec2, 2)[1])
    client.start_instance_refresh(
        AutoScalingGroupName=GROUP,
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"], "Version": str(version)}},
        Preferences={"MinHealthyPercentage": 50, "SkipMatching": True},
    )
    while poll(client)["Status"] != "Successful":
        pass
    assert keep in instance_ids(client)


def test_second_start_and_bad_cancel_are_errors():
    client, _ec2, _lt = make_fleet(size=1)
    with pytest.raises(ClientError, match="ActiveInstanceRefreshNotFound"):
        client.cancel_instance_refresh(AutoScalingGroupName=GROUP)
    client.start_instance_refresh(AutoScalingGroupName=GROUP)
    with pytest.raises(ClientError, match="InstanceRefreshInProgress"):
        client.start_instance_refresh(AutoScalingGroupName=GROUP)


def test_lifecycle_action_validation_and_heartbeat():
    client, ec2, lt = make_fleet(size=2, hook=True)
    version = new_version(ec2, lt, image_ids(ec2, 2)[1])
    client.start_instance_refresh(
        AutoScalingGroupName=GROUP,
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"], "Version": str(version)}},
        Preferences={"MinHealthyPercentage": 50, "SkipMatching": True},
    )
    poll(client)
    poll(client)
    (held,) = instance_ids(client, state="Terminating:Wait")
    serving = instance_ids(client, state="InService")[0]
    with pytest.raises(ClientError, match=f"No active Lifecycle Action found with instance ID {serving}"):
        client.complete_lifecycle_action(
            AutoScalingGroupName=GROUP, LifecycleHookName=HOOK, InstanceId=serving, LifecycleActionResult="CONTINUE"
        )
    with pytest.raises(ClientError, match="No Lifecycle Hook found"):
        client.complete_lifecycle_action(
            AutoScalingGroupName=GROUP, LifecycleHookName="nope", InstanceId=held, LifecycleActionResult="CONTINUE"
        )
    client.record_lifecycle_action_heartbeat(AutoScalingGroupName=GROUP, LifecycleHookName=HOOK, InstanceId=held)
    client.complete_lifecycle_action(
        AutoScalingGroupName=GROUP, LifecycleHookName=HOOK, InstanceId=held, LifecycleActionResult="CONTINUE"
    )
    poll(client)
    ec2_state = boto3.client("ec2", region_name=REGION).describe_instances(InstanceIds=[held])
    assert ec2_state["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"
    assert held not in instance_ids(client)


def test_disable_metrics_collection():
    client, _ec2, _lt = make_fleet(size=1)
    client.enable_metrics_collection(
        AutoScalingGroupName=GROUP, Granularity="1Minute", Metrics=["GroupMinSize", "GroupMaxSize"]
    )
    client.disable_metrics_collection(AutoScalingGroupName=GROUP, Metrics=["GroupMinSize"])
    assert [m["Metric"] for m in group(client)["EnabledMetrics"]] == ["GroupMaxSize"]
    client.disable_metrics_collection(AutoScalingGroupName=GROUP)
    assert group(client).get("EnabledMetrics", []) == []


def test_suspended_instance_refresh_process_pauses_the_refresh():
    client, ec2, lt = make_fleet(size=2)
    version = new_version(ec2, lt, image_ids(ec2, 2)[1])
    client.start_instance_refresh(
        AutoScalingGroupName=GROUP,
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"], "Version": str(version)}},
        Preferences={"MinHealthyPercentage": 50, "SkipMatching": True},
    )
    client.suspend_processes(AutoScalingGroupName=GROUP, ScalingProcesses=["InstanceRefresh"])
    for _attempt in range(5):
        refresh = poll(client)
    assert (refresh["Status"], refresh["PercentageComplete"]) == ("InProgress", 0)
    assert "paused" in refresh["StatusReason"]
    client.resume_processes(AutoScalingGroupName=GROUP, ScalingProcesses=["InstanceRefresh"])
    while poll(client)["Status"] != "Successful":
        pass
    assert {i["LaunchTemplate"]["Version"] for i in group(client)["Instances"]} == {str(version)}
