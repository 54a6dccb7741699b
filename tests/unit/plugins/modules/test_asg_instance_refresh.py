"""asg_instance_refresh: start only when instances are outdated, refuse when one runs, wait with a waiter, cancel."""

from __future__ import annotations

import pytest
from asg_fixtures import GROUP, HOOK, group, instance_ids, make_fleet, new_version, run_module
from tests.peers.moto_fleet import image_ids

from ansible_collections.dataplatform.dask.plugins.modules import asg_instance_refresh

FAST = {"wait_timeout": 20, "wait_delay": 1}


def refreshes(client):
    return client.describe_instance_refreshes(AutoScalingGroupName=GROUP)["InstanceRefreshes"]


def versions(client):
    return sorted({i["LaunchTemplate"]["Version"] for i in group(client)["Instances"]})


@pytest.mark.parametrize(
    ("prefs", "fragment"),
    [
        ({"min_healthy_percentage": 101}, "min_healthy_percentage=101 must be between 0 and 100"),
        ({"min_healthy_percentage": 50, "max_healthy_percentage": 201}, "must be between 100 and 200"),
        ({"min_healthy_percentage": 0, "max_healthy_percentage": 150}, "must be <= 100"),
        ({"checkpoint_percentages": [50, 25, 100]}, "unique and ascending"),
        ({"checkpoint_percentages": [25, 50]}, "must end with 100"),
        ({"checkpoint_percentages": [0, 100]}, "between 1 and 100"),
        ({"checkpoint_delay": 60}, "checkpoint_delay needs preferences.checkpoint_percentages"),
        ({"checkpoint_percentages": [100], "checkpoint_delay": 172801}, "between 0 and 172800"),
        ({"instance_warmup": -1}, "instance_warmup=-1 must be >= 0"),
    ],
)
def test_validate_preferences_rejects(prefs, fragment):
    assert fragment in asg_instance_refresh.validate_preferences(prefs)


def test_validate_preferences_accepts_sane_values():
    prefs = {"min_healthy_percentage": 75, "max_healthy_percentage": 125, "checkpoint_percentages": [25, 50, 100]}
    assert asg_instance_refresh.validate_preferences(dict(prefs, checkpoint_delay=300)) is None


def test_outdated_instances_resolves_latest_and_skips_leaving():
    target = {"id": "lt-1", "name": "w", "version": "3", "number": 3}
    template = {"LatestVersionNumber": 3, "DefaultVersionNumber": 1}
    instances = [
        {
            "instance_id": "i-a",
            "lifecycle_state": "InService",
            "launch_template": {"launch_template_id": "lt-1", "version": "$Latest"},
        },
        {
            "instance_id": "i-b",
            "lifecycle_state": "InService",
            "launch_template": {"launch_template_id": "lt-1", "version": "$Default"},
        },
        {
            "instance_id": "i-c",
            "lifecycle_state": "InService",
            "launch_template": {"launch_template_id": "lt-2", "version": "3"},
        },
        {
            "instance_id": "i-d",
            "lifecycle_state": "Terminating:Wait",
            "launch_template": {"launch_template_id": "lt-1", "version": "1"},
        },
        {"instance_id": "i-e", "lifecycle_state": "InService"},
    ]
    assert asg_instance_refresh.outdated_instances(instances, target, template) == ["i-b", "i-c", "i-e"]


def test_refresh_to_new_version_check_apply_check_apply(capsys):
    client, ec2, lt = make_fleet(size=4)
    version = new_version(ec2, lt, image_ids(ec2, 2)[1])
    args = {
        "name": GROUP,
        "launch_template": {"id": lt["LaunchTemplateId"], "version": str(version)},
        "preferences": {"min_healthy_percentage": 50, "checkpoint_percentages": [50, 100], "checkpoint_delay": 0},
        **FAST,
    }
    check = run_module(asg_instance_refresh, args, capsys, check=True, diff=True)
    assert check["changed"] is True
    assert check["outdated_instances"] == instance_ids(client)
    assert check["instance_refresh"]["instances_to_update"] == 4
    assert check["diff"]["before"]["outdated_instances"] == instance_ids(client)
    assert refreshes(client) == []

    applied = run_module(asg_instance_refresh, args, capsys)
    assert applied["changed"] is True
    assert applied["instance_refresh"]["status"] == "Successful"
    assert applied["instance_refresh"]["preferences"]["checkpoint_percentages"] == [50, 100]
    assert applied["target"]["number"] == version
    assert versions(client) == [str(version)]
    assert group(client)["LaunchTemplate"]["Version"] == str(version)

    assert run_module(asg_instance_refresh, args, capsys, check=True)["changed"] is False
    again = run_module(asg_instance_refresh, args, capsys)
    assert again["changed"] is False
    assert again["outdated_instances"] == []
    assert len(refreshes(client)) == 1


def test_force_starts_even_when_up_to_date(capsys):
    client, _ec2, _lt = make_fleet(size=2)
    args = {"name": GROUP, "force": True, **FAST}
    result = run_module(asg_instance_refresh, args, capsys)
    assert result["changed"] is True
    assert result["outdated_instances"] == []
    assert len(refreshes(client)) == 1


@pytest.mark.parametrize("check", [True, False])
def test_refuses_when_a_refresh_is_running(capsys, check):
    client, ec2, lt = make_fleet(size=4, hook=True)
    version = new_version(ec2, lt, image_ids(ec2, 2)[1])
    running = client.start_instance_refresh(AutoScalingGroupName=GROUP)["InstanceRefreshId"]
    args = {"name": GROUP, "launch_template": {"id": lt["LaunchTemplateId"], "version": str(version)}, **FAST}
    result = run_module(asg_instance_refresh, args, capsys, check=check)
    assert result.failed
    assert f"start instance refresh on ASG {GROUP}: refusing, refresh {running} is already" in result["msg"]
    assert [r["InstanceRefreshId"] for r in refreshes(client)] == [running]


@pytest.mark.parametrize(
    ("launch_template", "fragment"),
    [
        ({"name": "no-such-template"}, "launch template no-such-template not found"),
        (None, "has no version 9 (latest is 1)"),
        (None, "is not a number"),
    ],
)
def test_bad_target_fails_without_starting(capsys, launch_template, fragment):
    client, _ec2, lt = make_fleet(size=2)
    if launch_template is None:
        version = "9" if "version 9" in fragment else "newest"
        launch_template = {"id": lt["LaunchTemplateId"], "version": version}
    result = run_module(asg_instance_refresh, {"name": GROUP, "launch_template": launch_template}, capsys)
    assert result.failed
    assert fragment in result["msg"]
    assert refreshes(client) == []


def test_bad_preferences_fail_before_any_call(capsys):
    # No group exists: a message about the preference (not the group) proves nothing was called.
    result = run_module(
        asg_instance_refresh, {"name": "ghost", "preferences": {"checkpoint_percentages": [10, 50]}}, capsys
    )
    assert result.failed
    assert result["msg"].startswith(
        "start instance refresh on ASG ghost: preferences.checkpoint_percentages=[10, 50] must end with 100"
    )


def test_unknown_group(capsys):
    result = run_module(asg_instance_refresh, {"name": "ghost"}, capsys)
    assert result.failed
    assert "ASG ghost not found" in result["msg"]


def test_wait_times_out_while_workers_are_held_and_leaves_refresh_running(capsys):
    client, ec2, lt = make_fleet(size=2, hook=True)
    version = new_version(ec2, lt, image_ids(ec2, 2)[1])
    args = {
        "name": GROUP,
        "launch_template": {"id": lt["LaunchTemplateId"], "version": str(version)},
        "wait_timeout": 3,
        "wait_delay": 1,
    }
    result = run_module(asg_instance_refresh, args, capsys)
    assert result.failed
    assert "wait for instance refresh" in result["msg"]
    assert "Waiting for lifecycle actions" in result["msg"]
    assert refreshes(client)[0]["Status"] == "InProgress"
    assert len(instance_ids(client, state="Terminating:Wait")) == 1
    assert HOOK


def test_failed_refresh_is_reported_with_reason(capsys):
    _client, ec2, lt = make_fleet(size=2)
    version = new_version(ec2, lt, "ami-00000000000000000")
    result = run_module(
        asg_instance_refresh,
        {"name": GROUP, "launch_template": {"id": lt["LaunchTemplateId"], "version": str(version)}, **FAST},
        capsys,
    )
    assert result.failed
    assert "Failed" in result["msg"]
    assert "ami-00000000000000000" in result["msg"]
    assert result["instance_refresh"]["status"] == "Failed"


def test_cancel_check_apply_check_apply(capsys):
    client, _ec2, _lt = make_fleet(size=4, hook=True)
    running = client.start_instance_refresh(AutoScalingGroupName=GROUP)["InstanceRefreshId"]
    args = {"name": GROUP, "state": "cancelled", **FAST}
    check = run_module(asg_instance_refresh, args, capsys, check=True, diff=True)
    assert check["changed"] is True
    assert check["diff"] == {"before": {"running_refresh": running}, "after": {"running_refresh": None}}
    assert refreshes(client)[0]["Status"] in ("Pending", "InProgress")
    applied = run_module(asg_instance_refresh, args, capsys)
    assert applied["changed"] is True
    assert applied["instance_refresh"]["status"] == "Cancelled"
    assert run_module(asg_instance_refresh, args, capsys, check=True)["changed"] is False
    assert run_module(asg_instance_refresh, args, capsys)["changed"] is False


def template_versions(ec2, lt):
    return [
        v["VersionNumber"]
        for v in ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])[
            "LaunchTemplateVersions"
        ]
    ]


def test_new_image_makes_one_version_and_rolls_onto_it(capsys):
    client, ec2, lt = make_fleet(size=3)
    new_ami = image_ids(ec2, 2)[1]
    args = {"name": GROUP, "image_id": new_ami, "preferences": {"min_healthy_percentage": 60}, **FAST}

    check = run_module(asg_instance_refresh, args, capsys, check=True)
    assert check["changed"] is True
    assert check["target"]["number"] == 2
    assert sorted(template_versions(ec2, lt)) == [1]

    applied = run_module(asg_instance_refresh, args, capsys)
    assert applied["changed"] is True
    assert applied["instance_refresh"]["status"] == "Successful"
    assert sorted(template_versions(ec2, lt)) == [1, 2]
    assert versions(client) == ["2"]
    assert group(client)["LaunchTemplate"]["Version"] == "2"
    reservations = ec2.describe_instances(InstanceIds=instance_ids(client))["Reservations"]
    assert {i["ImageId"] for r in reservations for i in r["Instances"]} == {new_ami}

    assert run_module(asg_instance_refresh, args, capsys, check=True)["changed"] is False
    again = run_module(asg_instance_refresh, args, capsys)
    assert again["changed"] is False
    assert again["target"]["number"] == 2
    assert sorted(template_versions(ec2, lt)) == [1, 2]


def test_unknown_image_fails_before_making_a_version(capsys):
    client, ec2, lt = make_fleet(size=1)
    result = run_module(asg_instance_refresh, {"name": GROUP, "image_id": "ami-0000000000000beef"}, capsys)
    assert result.failed
    assert "image ami-0000000000000beef not found" in result["msg"]
    assert template_versions(ec2, lt) == [1]
    assert refreshes(client) == []
