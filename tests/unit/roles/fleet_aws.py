"""The Slurm fleet hook tests' worker ASG inside moto's in-process mock (imported like asg_fixtures)."""

from __future__ import annotations

import contextlib

import boto3
from moto import mock_aws

REGION = "eu-west-1"
GROUP = "dask-fleet"
HOOK = "slurm-drain"


@contextlib.contextmanager
def fleet_group(monkeypatch, min_size, max_size, desired, hook=False, protected=False):
    """moto with the fleet's ASG (one c5.large launch template); yields (autoscaling, ec2)."""
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        autoscaling = boto3.client("autoscaling", region_name=REGION)
        ami = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"])[0]
        lt = ec2.create_launch_template(
            LaunchTemplateName="fleet", LaunchTemplateData={"ImageId": ami, "InstanceType": "c5.large"}
        )["LaunchTemplate"]
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=GROUP,
            LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "1"},
            MinSize=min_size,
            MaxSize=max_size,
            DesiredCapacity=desired,
            AvailabilityZones=[f"{REGION}a"],
            NewInstancesProtectedFromScaleIn=protected,
        )
        if hook:
            autoscaling.put_lifecycle_hook(
                AutoScalingGroupName=GROUP,
                LifecycleHookName=HOOK,
                LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                HeartbeatTimeout=300,
            )
        yield autoscaling, ec2
