"""At boot, before slurmd: take a placeholder node Slurm is waiting for, or none.

The controller keeps powered-down placeholder nodes (fleet-1, fleet-2, ...) so Slurm can ask for
capacity when every node is busy; its ResumeProgram records ``<path>/wanted/<node>`` in SSM
Parameter Store before it raises the group's desired capacity. An instance that boots runs this
(slurm-node-claim.service, with the Dask environment's boto3 and the instance profile):

  slurm_node_claim.py --path /dataplatform/slurm/CLUSTER --env-file /run/slurm/claim.env
                      [--instance-id ID] [--report-boot] [--wait SECONDS]

1. the instance's id: --instance-id, else SLURM_NODE_INSTANCE_ID, else the instance metadata;
2. a claim this instance already holds (a reboot) keeps its node;
3. else each wanted node in name order: create ``<path>/claims/<node>`` = the instance id with
   Overwrite=False. The first instance to create it has the node; another gets
   ParameterAlreadyExists and tries the next one, so two instances never take one node;
4. the env file gets SLURM_NODE_CLAIM_ARGS="-N <node>" (with -b under --report-boot), or
   nothing: slurmd then registers under the host name, as without placeholders.

AWS errors are retried until --wait runs out; then the node registers under its host name
(exit 0, logged) rather than keep slurmd from starting.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dataplatform_dask.fleet.claims import Claims

IMDS = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254").rstrip("/")


class ClaimError(Exception):
    """An AWS call failed; the message names the action and the parameter path."""


def log(message):
    print(f"slurm_node_claim: {message}", file=sys.stderr, flush=True)


def instance_id(given):
    if given:
        return given
    if os.environ.get("SLURM_NODE_INSTANCE_ID"):
        return os.environ["SLURM_NODE_INSTANCE_ID"]
    try:
        token_req = urllib.request.Request(  # noqa: S310 (fixed link-local URL)
            f"{IMDS}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        )
        with urllib.request.urlopen(token_req, timeout=2) as r:  # noqa: S310 (fixed link-local URL)
            token = r.read().decode()
        req = urllib.request.Request(  # noqa: S310
            f"{IMDS}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
        )
        with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310
            return r.read().decode().strip()
    except (urllib.error.URLError, OSError) as e:
        raise ClaimError(
            f"no instance id: the instance metadata does not answer ({e}); set SLURM_NODE_INSTANCE_ID"
        ) from None


class Refused(ClaimError):
    """AWS said no (permissions): retrying will not help."""


def region():
    found = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if found:
        return found
    try:
        token_req = urllib.request.Request(  # noqa: S310 (fixed link-local URL)
            f"{IMDS}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        )
        with urllib.request.urlopen(token_req, timeout=2) as r:  # noqa: S310
            token = r.read().decode()
        req = urllib.request.Request(  # noqa: S310
            f"{IMDS}/latest/meta-data/placement/region", headers={"X-aws-ec2-metadata-token": token}
        )
        with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310
            return r.read().decode().strip()
    except (urllib.error.URLError, OSError) as e:
        raise ClaimError(f"no AWS region: the instance metadata does not answer ({e}); set AWS_REGION") from None


def aws_error(action, e):
    code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
    if code in ("AccessDenied", "AccessDeniedException"):
        return Refused(
            f"{action}: {code} (grant the instance profile ssm:GetParametersByPath/PutParameter/DeleteParameter)"
        )
    return ClaimError(f"{action}: {e}")


def write_env(path, node, report_boot):
    args = f"-N {node}{' -b' if report_boot else ''}" if node else ""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f'SLURM_NODE_CLAIM_ARGS="{args}"\n')
    os.replace(tmp, path)


def run(path, env_file, given_id, report_boot, wait, *, ssm=None, sleep=time.sleep):
    deadline = time.monotonic() + wait
    delay = 2.0
    while True:
        try:
            iid = instance_id(given_id)
            if ssm is None:
                import boto3

                ssm = boto3.client("ssm", region_name=region())
            node = Claims(path, ssm, error=aws_error).claim(iid, log)
            break
        except Refused as e:
            log(f"{e}; registering under the host name")
            node = None
            break
        except ClaimError as e:
            if time.monotonic() + delay > deadline:
                log(f"{e}; registering under the host name")
                node = None
                break
            log(f"{e}; retrying in {delay:.0f} s")
            sleep(delay)
            delay = min(delay * 2, 30.0)
    if node is None:
        log("no placeholder is waiting; slurmd registers under the host name")
    write_env(env_file, node, report_boot)
    return node


def main(argv=None, ssm=None, sleep=time.sleep):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", required=True, help="the SSM Parameter Store path of the cluster's claims")
    p.add_argument("--env-file", default="/run/slurm/claim.env")
    p.add_argument("--instance-id", default="")
    p.add_argument("--report-boot", action="store_true", help="add slurmd -b (hosts whose uptime is not their own)")
    p.add_argument("--wait", type=float, default=120.0)
    args = p.parse_args(argv)
    run(args.path, args.env_file, args.instance_id, args.report_boot, args.wait, ssm=ssm, sleep=sleep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
