"""asg_refresh_progress: one read of refresh state and held instances, for an until loop."""

from __future__ import annotations

from asg_fixtures import GROUP, HOOK, instance_ids, make_fleet, new_version, run_module
from tests.peers.moto_fleet import image_ids

from ansible_collections.dataplatform.dask.plugins.modules import asg_refresh_progress


def start(client, ec2, lt, image_index=1, image=None):
    version = new_version(ec2, lt, image or image_ids(ec2, 2)[image_index])
    return client.start_instance_refresh(
        AutoScalingGroupName=GROUP,
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"], "Version": str(version)}},
        Preferences={"MinHealthyPercentage": 50, "SkipMatching": True},
    )["InstanceRefreshId"]


def test_follow_a_refresh_to_success(capsys):
    client, ec2, lt = make_fleet(size=2, hook=True)
    refresh_id = start(client, ec2, lt)
    args = {"name": GROUP, "instance_refresh_id": refresh_id, "lifecycle_hook_name": HOOK}
    seen = []
    for _attempt in range(10):
        progress = run_module(asg_refresh_progress, args, capsys, check=True)
        assert progress["changed"] is False
        assert progress["desired_capacity"] == 2
        seen.append((progress["instance_refresh"]["status"], tuple(progress["held_instances"])))
        for held in progress["held_instances"]:
            client.complete_lifecycle_action(
                AutoScalingGroupName=GROUP, LifecycleHookName=HOOK, InstanceId=held, LifecycleActionResult="CONTINUE"
            )
        if progress["done"]:
            break
    assert progress["successful"] is True
    assert progress["in_service"] == 2
    held_batches = [held for _status, held in seen if held]
    assert len(held_batches) == 2
    assert all(len(batch) == 1 for batch in held_batches)


def test_failed_refresh_is_done_but_not_successful(capsys):
    client, ec2, lt = make_fleet(size=2)
    start(client, ec2, lt, image="ami-00000000000000bad")
    for _attempt in range(5):
        progress = run_module(asg_refresh_progress, {"name": GROUP}, capsys)
        if progress["done"]:
            break
    assert progress["done"] is True
    assert progress["successful"] is False
    assert progress["instance_refresh"]["status"] == "Failed"
    assert progress["in_service"] < progress["desired_capacity"]


def test_no_refresh_or_unknown_hook_fails(capsys):
    client, _ec2, _lt = make_fleet(size=1, hook=True)
    result = run_module(asg_refresh_progress, {"name": GROUP}, capsys)
    assert result.failed
    assert f"read refresh progress on ASG {GROUP}: any instance refresh not found" == result["msg"]
    client.start_instance_refresh(AutoScalingGroupName=GROUP)
    result = run_module(asg_refresh_progress, {"name": GROUP, "lifecycle_hook_name": "nope"}, capsys)
    assert result.failed
    assert "lifecycle hook nope not found" in result["msg"]
    assert instance_ids(client)
