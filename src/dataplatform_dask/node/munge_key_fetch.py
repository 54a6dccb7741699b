"""First boot of a baked image: fetch the cluster's MUNGE key before munge starts.

An image baked with ``slurm_munge_start_services: false`` has munge installed and enabled but
no key. ``munge-key-fetch.service`` (ordered before munge.service, skipped once the key file
exists) runs this with the Dask environment's Python (boto3) and the instance profile's
credentials:

  munge_key_fetch.py [--source ssm:NAME | secretsmanager:ID] [--source-tag TAG]
                     [--key-file /etc/munge/munge.key] [--wait SECONDS] [--owner munge]

The source is ``--source``, else the value of the instance tag ``--source-tag`` (read from the
instance metadata, which needs instance metadata tags enabled). ``ssm:`` reads an SSM Parameter
Store SecureString (decrypted), ``secretsmanager:`` a Secrets Manager secret's SecretString.
The region is AWS_REGION / AWS_DEFAULT_REGION, else the instance's own (metadata). The key is
written 0400 munge:munge through a temporary file and a rename, and never printed. AWS errors
are retried until ``--wait`` runs out (the network and the instance profile may come late at
boot); a missing parameter or a key shorter than 32 characters fails at once, naming it.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

MIN_KEY_LENGTH = 32
IMDS = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254").rstrip("/")


class FetchError(Exception):
    """The message names the source and what to fix."""


class Permanent(FetchError):
    """Retrying will not help (no such parameter, access denied, a bad key)."""


def log(message):
    print(f"munge_key_fetch: {message}", file=sys.stderr, flush=True)


def metadata(path, timeout=2.0):
    """One instance metadata value (IMDSv2), or None when there is no such value or no IMDS."""
    try:
        token_req = urllib.request.Request(  # noqa: S310 (fixed link-local URL)
            f"{IMDS}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        )
        with urllib.request.urlopen(token_req, timeout=timeout) as r:  # noqa: S310 (fixed link-local URL)
            token = r.read().decode()
        req = urllib.request.Request(f"{IMDS}/latest/{path}", headers={"X-aws-ec2-metadata-token": token})  # noqa: S310
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
            return r.read().decode().strip()
    except (urllib.error.URLError, OSError):
        return None


def parse_source(text):
    kind, sep, name = (text or "").partition(":")
    if not sep or kind not in ("ssm", "secretsmanager") or not name:
        raise Permanent(
            f"key source '{text}' is not ssm:PARAMETER or secretsmanager:SECRET_ID (slurm_munge_key_source, "
            "or the instance tag slurm_munge_key_source_tag names)"
        )
    return kind, name


def resolve_source(source, source_tag):
    if source:
        return parse_source(source)
    if source_tag:
        value = metadata(f"meta-data/tags/instance/{source_tag}")
        if value:
            return parse_source(value)
        raise FetchError(
            f"no key source: the instance tag {source_tag} is not readable from the instance metadata "
            "(set the tag and enable instance metadata tags, or set slurm_munge_key_source)"
        )
    raise Permanent("no key source: set slurm_munge_key_source or slurm_munge_key_source_tag")


def region():
    found = (
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or metadata("meta-data/placement/region")
    )
    if not found:
        raise FetchError("no AWS region: set AWS_REGION in /etc/default/munge-key-fetch or run on EC2")
    return found


def boto3_clients(the_region):
    import boto3

    def client(service):
        return boto3.client(service, region_name=the_region)

    return client


def read_key(kind, name, client_factory):
    """The key's text from SSM or Secrets Manager. Raises Permanent or FetchError."""
    import botocore.exceptions

    label = f"{kind}:{name}"
    try:
        if kind == "ssm":
            value = client_factory("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        else:
            value = client_factory("secretsmanager").get_secret_value(SecretId=name).get("SecretString", "")
    except botocore.exceptions.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        message = f"read the MUNGE key from {label}: {code or e}"
        if code in ("ParameterNotFound", "ResourceNotFoundException", "AccessDeniedException", "AccessDenied"):
            raise Permanent(
                f"{message} (create it, or grant the instance profile ssm:GetParameter / kms:Decrypt)"
            ) from None
        raise FetchError(message) from None
    except botocore.exceptions.BotoCoreError as e:  # no credentials yet, endpoint unreachable
        raise FetchError(f"read the MUNGE key from {label}: {e}") from None
    if len(value) < MIN_KEY_LENGTH:
        raise Permanent(f"the MUNGE key in {label} is too short ({len(value)} characters, at least {MIN_KEY_LENGTH})")
    return value


def write_key(path, value, owner="munge"):
    """Write 0400 owner:owner's group (when root) via a temporary file in the same directory and a rename."""
    path = Path(path)
    try:
        account = pwd.getpwnam(owner)
    except KeyError:
        raise Permanent(f"no user {owner} to own {path} (is munge installed?)") from None
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    try:
        os.write(fd, value.encode())
        if os.geteuid() == 0:
            os.fchown(fd, account.pw_uid, account.pw_gid)
        os.fchmod(fd, 0o400)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fetch(source, source_tag, key_file, wait, *, client_factory=None, sleep=time.sleep, owner="munge"):
    if Path(key_file).exists():
        log(f"{key_file} exists; nothing to fetch")
        return 0
    deadline = time.monotonic() + wait
    delay = 2.0
    while True:
        try:
            kind, name = resolve_source(source, source_tag)
            if client_factory is None:
                client_factory = boto3_clients(region())
            value = read_key(kind, name, client_factory)
            write_key(key_file, value, owner)
            log(f"wrote {key_file} from {kind}:{name}")
            return 0
        except Permanent as e:
            log(str(e))
            return 1
        except FetchError as e:
            if time.monotonic() + delay > deadline:
                log(f"{e}; gave up after {wait} s")
                return 1
            log(f"{e}; retrying in {delay:.0f} s")
            sleep(delay)
            delay = min(delay * 2, 30.0)


def main(argv=None, client_factory=None, sleep=time.sleep):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="", help="ssm:PARAMETER or secretsmanager:SECRET_ID")
    p.add_argument("--source-tag", default="", help="instance tag whose value is the source")
    p.add_argument("--key-file", default="/etc/munge/munge.key")
    p.add_argument("--wait", type=float, default=300.0, help="seconds to keep retrying AWS errors")
    p.add_argument("--owner", default="munge", help="the key file's owner (and its group)")
    args = p.parse_args(argv)
    return fetch(
        args.source,
        args.source_tag,
        args.key_file,
        args.wait,
        client_factory=client_factory,
        sleep=sleep,
        owner=args.owner,
    )


if __name__ == "__main__":
    sys.exit(main())
