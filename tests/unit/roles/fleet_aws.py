"""The Slurm fleet hook tests' worker ASG inside moto's in-process mock (imported like asg_fixtures)."""

from __future__ import annotations

import contextlib

import boto3
from moto import mock_aws

from tests.peers.moto_fleet import make_group

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
        make_group(
            ec2,
            autoscaling,
            GROUP,
            min_size=min_size,
            max_size=max_size,
            desired=desired,
            template="fleet",
            protected=protected,
            hook=HOOK if hook else None,
        )
        yield autoscaling, ec2
