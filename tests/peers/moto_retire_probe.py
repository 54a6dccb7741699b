"""Stand-in for a worker's retirement in the rolling update tests.

``python tests/peers/moto_retire_probe.py INSTANCE_ID LOG`` appends the instance id and the
lifecycle state AWS (moto) reports for it at that moment, so a test can check that every
worker was retired while the termination hook held it (``Terminating:Wait``).
"""

from __future__ import annotations

import sys

import boto3


def main(instance_id: str, log: str) -> None:
    client = boto3.client("autoscaling")
    found = client.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
    state = found[0]["LifecycleState"] if found else "absent"
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"{instance_id} {state}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
