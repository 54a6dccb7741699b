"""Start and retire a Dask worker under systemd (dataplatform.dask.dask_worker).

launch   find the scheduler address, then exec ``dask worker ADDRESS ARGS...``.
         The address comes from, in order: $DASK_SCHEDULER_ADDRESS, the file
         /etc/dask/scheduler-address (written by Ansible, or by EC2 user data on a baked
         AMI), or the SSM parameter named in /etc/dask/discovery.env. A baked worker
         therefore joins with no Ansible at boot. When no address can be found yet it exits
         non-zero and systemd tries again.
retire   ask the scheduler to retire this node's workers, so their keys move to other
         workers before the process stops (ExecStop, and so an ASG termination hook that
         stops the unit). Only a hard kill loses keys.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

CONFIG_DIR = os.environ.get("DASK_CONFIG", "/etc/dask")
ADDRESS_FILE = os.path.join(CONFIG_DIR, "scheduler-address")
DISCOVERY_FILE = os.path.join(CONFIG_DIR, "discovery.env")
ADDRESS_RE = re.compile(r"^(tls|tcp)://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class NoAddress(RuntimeError):
    """No scheduler address could be found (yet)."""


def read_env_file(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for raw in handle:
                line = raw.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip().strip("'\"")
    except FileNotFoundError:
        pass
    return values


def read_address_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            for raw in handle:
                line = raw.strip()
                if line and not line.startswith("#"):
                    return line
    except FileNotFoundError:
        pass
    return ""


def imds_region(timeout: float = 2.0) -> str:
    """The instance's region from IMDSv2 (only used on EC2 without AWS_REGION)."""
    import urllib.request

    token_req = urllib.request.Request(
        "http://169.254.169.254/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    with urllib.request.urlopen(token_req, timeout=timeout) as resp:  # noqa: S310 - fixed IMDS address
        token = resp.read().decode()
    doc_req = urllib.request.Request(
        "http://169.254.169.254/latest/meta-data/placement/region",
        headers={"X-aws-ec2-metadata-token": token},
    )
    with urllib.request.urlopen(doc_req, timeout=timeout) as resp:  # noqa: S310
        return resp.read().decode().strip()


def ssm_address(parameter: str, region: str) -> str:
    import boto3

    client = boto3.client("ssm", region_name=region or os.environ.get("AWS_REGION") or imds_region())
    return client.get_parameter(Name=parameter)["Parameter"]["Value"].strip()


def resolve_address(env: dict[str, str] | None = None) -> tuple[str, str]:
    """Return (address, where it came from); raise NoAddress when none is available."""
    env = os.environ if env is None else env
    candidates = []
    if env.get("DASK_SCHEDULER_ADDRESS"):
        candidates.append((env["DASK_SCHEDULER_ADDRESS"], "DASK_SCHEDULER_ADDRESS"))
    from_file = read_address_file(ADDRESS_FILE)
    if from_file:
        candidates.append((from_file, ADDRESS_FILE))
    if not candidates:
        discovery = read_env_file(DISCOVERY_FILE)
        parameter = discovery.get("DASK_SCHEDULER_SSM_PARAMETER", "")
        if parameter:
            try:
                candidates.append(
                    (ssm_address(parameter, discovery.get("AWS_REGION", "")), f"SSM parameter {parameter}")
                )
            except Exception as exc:  # any AWS failure means "not yet"
                raise NoAddress(f"SSM parameter {parameter} could not be read: {exc}") from exc
    if not candidates:
        raise NoAddress(
            f"no scheduler address: set DASK_SCHEDULER_ADDRESS, write {ADDRESS_FILE}, "
            f"or name an SSM parameter as DASK_SCHEDULER_SSM_PARAMETER in {DISCOVERY_FILE}"
        )
    address, source = candidates[0]
    if not ADDRESS_RE.match(address):
        raise NoAddress(f"{source} holds {address!r}, which is not a tls://host:port or tcp://host:port address")
    return address, source


def launch(dask_args: list[str]) -> int:
    try:
        address, source = resolve_address()
    except NoAddress as exc:
        print(f"dask-worker: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: systemd restarts the unit and we look again
    print(f"dask-worker: scheduler {address} (from {source})", file=sys.stderr)
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    os.execv(dask, [dask, "worker", address, *dask_args])  # noqa: S606 - our own venv's dask
    return 0  # not reached


def my_workers(info: dict, name: str) -> list[str]:
    """Addresses of the workers this node runs: named NAME, or NAME-<n> with --nworkers > 1."""
    pattern = re.compile(rf"^{re.escape(name)}(-\d+)?$")
    return [addr for addr, ws in info.get("workers", {}).items() if pattern.match(str(ws.get("name", "")))]


def retire(name: str, timeout: float) -> int:
    try:
        address = resolve_address()[0]
    except NoAddress as exc:
        print(f"dask-worker retire: {exc}; nothing to retire to", file=sys.stderr)
        return 0
    from distributed import Client

    start = time.monotonic()
    try:
        with Client(address, timeout=min(timeout, 15), set_as_default=False) as client:
            workers = my_workers(client.scheduler_info(n_workers=-1), name)
            if not workers:
                print(f"dask-worker retire: no worker named {name} at {address}", file=sys.stderr)
                return 0
            # Move every key these workers hold to the others, then close them.
            result = client.retire_workers(workers=workers, close_workers=True, remove=True)
            moved = ", ".join(sorted(result)) if result else "none"
            print(
                f"dask-worker retire: retired {moved} in {time.monotonic() - start:.1f} s",
                file=sys.stderr,
            )
    except (OSError, TimeoutError) as exc:
        print(f"dask-worker retire: scheduler {address} unreachable ({exc}); stopping unretired", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or retire this node's Dask worker.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("launch", help="exec dask worker with the discovered scheduler address")
    retire_p = sub.add_parser("retire", help="retire this node's workers gracefully")
    retire_p.add_argument("--name", required=True, help="the worker name given to dask worker --name")
    retire_p.add_argument("--timeout", type=float, default=120.0)
    sub.add_parser("address", help="print the scheduler address this node would use")
    args, rest = parser.parse_known_args(argv)
    if args.command == "launch":
        return launch([a for a in rest if a != "--"])
    if args.command == "retire":
        return retire(args.name, args.timeout)
    try:
        print(resolve_address()[0])
    except NoAddress as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
