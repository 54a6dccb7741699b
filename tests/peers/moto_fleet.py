"""A worker Auto Scaling group in moto, the one way every test makes one.

Used by the ASG module unit tests (moto's in-process mock), the Slurm fleet hook tests (mock and
moto server) and the AWS playbook tests (moto server): a launch template (version 1) from one of
moto's images and a group launched from it, with a termination lifecycle hook when asked.
"""

from __future__ import annotations

import boto3

REGION = "eu-west-1"


def image_ids(ec2, count: int = 1) -> list[str]:
    """``count`` of moto's image ids, sorted (launch templates and refreshes pick from them)."""
    images = ec2.describe_images(Owners=["amazon"])["Images"] or ec2.describe_images()["Images"]
    ids = sorted(i["ImageId"] for i in images)
    assert len(ids) >= count, "moto has no images to build launch templates from"
    return ids[:count]


def clients(url: str, *services: str, region: str = REGION) -> tuple:
    """boto3 clients of a moto server at ``url``."""
    kw = {"endpoint_url": url, "region_name": region, "aws_access_key_id": "testing"}
    kw["aws_secret_access_key"] = "testing"
    return tuple(boto3.client(s, **kw) for s in services)


def make_group(
    ec2,
    autoscaling,
    name: str,
    *,
    min_size: int,
    max_size: int,
    desired: int,
    template: str | None = None,
    instance_type: str = "c5.large",
    tags: dict[str, str] | None = None,
    protected: bool = False,
    hook: str | None = None,
    heartbeat: int = 300,
    default_result: str | None = None,
) -> dict:
    """Create launch template ``template`` (default ``<name>-lt``) and ASG ``name``; returns the template."""
    lt = ec2.create_launch_template(
        LaunchTemplateName=template or f"{name}-lt",
        LaunchTemplateData={"ImageId": image_ids(ec2)[0], "InstanceType": instance_type},
    )["LaunchTemplate"]
    params = {
        "AutoScalingGroupName": name,
        "LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "1"},
        "MinSize": min_size,
        "MaxSize": max_size,
        "DesiredCapacity": desired,
        "AvailabilityZones": [f"{autoscaling.meta.region_name}a"],
        "NewInstancesProtectedFromScaleIn": protected,
    }
    if tags:
        params["Tags"] = [{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()]
    autoscaling.create_auto_scaling_group(**params)
    if hook:
        extra = {"DefaultResult": default_result} if default_result else {}
        autoscaling.put_lifecycle_hook(
            AutoScalingGroupName=name,
            LifecycleHookName=hook,
            LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
            HeartbeatTimeout=heartbeat,
            **extra,
        )
    return lt
