"""Shared helpers for the ASG module unit tests: a moto-backed fleet and a module runner."""

from __future__ import annotations

import json

import boto3
import pytest
from ansible.module_utils.testing import patch_module_args

from tests.peers import moto_ext
from tests.peers.moto_fleet import make_group

moto_ext.patch()

REGION = "eu-west-1"
GROUP = "dask-workers"
HOOK = "dask-worker-retire"


class ModuleResult(dict):
    """What exit_json/fail_json printed, plus whether it failed."""

    @property
    def failed(self) -> bool:
        return bool(self.get("failed"))


def run_module(module, args, capsys, check=False, diff=False):
    """Run ``module.main()`` with ``args`` the way Ansible would and return its JSON result."""
    full = dict(args, _ansible_check_mode=check, _ansible_diff=diff, region=REGION)
    with patch_module_args(full), pytest.raises(SystemExit):
        module.main()
    out = capsys.readouterr().out
    return ModuleResult(json.loads(out))


def make_fleet(size=4, max_size=20, min_size=1, hook=False, name=GROUP):
    """A launch template (version 1) and an ASG of ``size`` instances launched from it."""
    ec2 = boto3.client("ec2", region_name=REGION)
    asg = boto3.client("autoscaling", region_name=REGION)
    lt = make_group(
        ec2,
        asg,
        name,
        min_size=min_size,
        max_size=max_size,
        desired=size,
        instance_type="t3.large",
        hook=HOOK if hook else None,
        heartbeat=600,
        default_result="CONTINUE",
    )
    return asg, ec2, lt


def new_version(ec2, lt, image_id):
    return ec2.create_launch_template_version(
        LaunchTemplateId=lt["LaunchTemplateId"],
        SourceVersion="1",
        LaunchTemplateData={"ImageId": image_id},
    )["LaunchTemplateVersion"]["VersionNumber"]


def group(asg, name=GROUP):
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def instance_ids(asg, name=GROUP, state=None):
    return sorted(
        i["InstanceId"] for i in group(asg, name)["Instances"] if state is None or i["LifecycleState"] == state
    )
