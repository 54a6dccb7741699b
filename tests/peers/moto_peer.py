"""The AWS stand-in of the platform scenario and `make demo`: the extended moto server
(tests/peers/moto_server_ext.py) on 127.0.0.1, run in the background and found again through
its PID file, so `start` is idempotent; plus the worker Auto Scaling group that site.yml's
monitoring and autoscaling plays expect to find.

    python tests/peers/moto_peer.py start [--port 15011] [--asg dask-workers]
    python tests/peers/moto_peer.py status | stop

`start` prints the environment (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, keys) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".cache" / "moto"
PIDFILE = STATE / "moto.pid"
REGION = "eu-west-1"


def pid_alive() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def env(port: int) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
    except OSError:
        return False
    return True


def start(port: int) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    if pid_alive() and answers(port):
        return
    stop()
    with (STATE / "moto.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.peers.moto_server_ext", "-H", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    PIDFILE.write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"moto server exited ({proc.returncode}): see {STATE / 'moto.log'}")
        if answers(port):
            return
        time.sleep(0.2)
    stop()
    raise SystemExit(f"moto server did not answer on 127.0.0.1:{port} within 30 s: see {STATE / 'moto.log'}")


def ensure_asg(port: int, name: str, size: int) -> None:
    """The workers' group as an operator's Terraform would have made it (idempotent)."""
    import boto3

    kw = {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": REGION}
    kw.update(aws_access_key_id="testing", aws_secret_access_key="testing")
    asg, ec2 = boto3.client("autoscaling", **kw), boto3.client("ec2", **kw)
    if asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]:
        return
    templates = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": ["dask-worker"]}])
    if templates["LaunchTemplates"]:
        template_id = templates["LaunchTemplates"][0]["LaunchTemplateId"]
    else:
        image = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"])[0]
        template_id = ec2.create_launch_template(
            LaunchTemplateName="dask-worker", LaunchTemplateData={"ImageId": image, "InstanceType": "c5.large"}
        )["LaunchTemplate"]["LaunchTemplateId"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"},
        MinSize=size,
        MaxSize=20,
        DesiredCapacity=size,
        AvailabilityZones=[f"{REGION}a"],
        Tags=[{"Key": "Role", "Value": "dask-worker", "PropagateAtLaunch": True}],
    )


def stop() -> None:
    pid = pid_alive()
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _attempt in range(100):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
    PIDFILE.unlink(missing_ok=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=int(os.environ.get("DP_MOTO_PORT", "15011")))
    p.add_argument("--asg", default="dask-workers", help="start: the workers' Auto Scaling group to make")
    p.add_argument("--asg-size", type=int, default=5)
    args = p.parse_args()
    if args.action == "stop":
        stop()
        return 0
    if args.action == "start":
        start(args.port)
        if args.asg:
            ensure_asg(args.port, args.asg, args.asg_size)
    running = bool(pid_alive()) and answers(args.port)
    print(json.dumps({"running": running, "env": env(args.port)}, indent=2))
    return 0 if running or args.action == "status" else 1


if __name__ == "__main__":
    sys.exit(main())
