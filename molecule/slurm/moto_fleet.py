"""The slurm scenario's AWS: the extended moto server on the scenario's docker network gateway (so
the containers reach it, nothing else does), with the fleet's Auto Scaling group and the munge key
as an SSM SecureString.

    python molecule/slurm/moto_fleet.py start --host 172.18.0.1 --state DIR --key-file FILE
    python molecule/slurm/moto_fleet.py stop --state DIR

`start` is idempotent and prints {"url": ...}; the state directory keeps the PID, port and log.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
GROUP = "molecule-fleet"
KEY_PARAMETER = "/molecule/slurm/munge-key"


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
    except OSError:
        return False
    return True


def running(state: Path) -> str | None:
    try:
        info = json.loads((state / "moto.json").read_text())
        os.kill(info["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return info["url"] if answers(info["url"]) else None


def start(host: str, state: Path, key_file: Path) -> str:
    state.mkdir(parents=True, exist_ok=True)
    url = running(state)
    if not url:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        url = f"http://{host}:{port}"
        log = (state / "moto.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.peers.moto_server_ext", "-H", host, "-p", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (state / "moto.json").write_text(json.dumps({"pid": proc.pid, "url": url}))
        deadline = time.monotonic() + 30
        while not answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"moto server did not start on {url}: {(state / 'moto.log').read_text()[-2000:]}")
            time.sleep(0.2)
    kw = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "testing"}
    kw["aws_secret_access_key"] = "testing"
    ec2, autoscaling, ssm = (boto3.client(s, **kw) for s in ("ec2", "autoscaling", "ssm"))
    if not autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]:
        ami = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"])[0]
        lt = ec2.create_launch_template(
            LaunchTemplateName=GROUP, LaunchTemplateData={"ImageId": ami, "InstanceType": "c5.large"}
        )["LaunchTemplate"]
        # Two instances, the two fleet containers; no room to grow until a test raises MaxSize.
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=GROUP,
            LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "1"},
            MinSize=0,
            MaxSize=2,
            DesiredCapacity=2,
            AvailabilityZones=[f"{REGION}a"],
        )
    key = key_file.read_text().strip()
    ssm.put_parameter(Name=KEY_PARAMETER, Value=key, Type="SecureString", Overwrite=True)
    return url


def stop(state: Path) -> None:
    try:
        info = json.loads((state / "moto.json").read_text())
        os.kill(info["pid"], signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        pass
    (state / "moto.json").unlink(missing_ok=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--key-file", type=Path)
    args = p.parse_args()
    if args.action == "start":
        print(json.dumps({"url": start(args.host, args.state, args.key_file)}))
    else:
        stop(args.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
