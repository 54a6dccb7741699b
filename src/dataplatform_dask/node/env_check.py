"""Tell a Dask client exactly which packages differ from the platform's lock.

Version drift between a client and the cluster's workers is the most common Dask
deployment failure: pickled graphs or serialized results fail in ways that do not name
the cause. Run this in the client's environment with the lock the platform publishes
(``dask-env-<version>.lock``, handed out by ``playbooks/dask_client.yml``):

    dask-env-check --lock dask-env-2026.8.0.lock

Exit 0 when every locked package is installed at the locked version, 1 otherwise (each
mismatch is printed), 2 when the lock cannot be read.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from importlib import metadata

# The packages whose versions must match for client, scheduler and workers to talk;
# a difference in any other locked package is reported as a warning only.
CRITICAL = {"dask", "distributed", "cloudpickle", "msgpack", "tornado", "toolz", "numpy", "pandas", "pyarrow", "lz4"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    with open(path, encoding="utf-8") as lock:
        for raw in lock:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep:
                raise ValueError(f"{path}: not an exact pin: {line!r}")
            pins[canonical(name.split("[", 1)[0])] = version.strip()
    return pins


def installed_versions() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def compare(pins: dict[str, str], installed: dict[str, str]) -> list[tuple[str, str, str, bool]]:
    """Return (package, locked, installed or 'missing', critical) for every difference."""
    out = []
    for name, want in sorted(pins.items()):
        have = installed.get(name, "missing")
        if have != want:
            out.append((name, want, have, name in CRITICAL))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    # The roles install each environment with its own lock beside it (<prefix>/dask-env.lock).
    own_lock = os.path.join(sys.prefix, "dask-env.lock")
    default_lock = os.environ.get("DASK_ENV_LOCK") or (own_lock if os.path.exists(own_lock) else None)
    parser.add_argument(
        "--lock",
        required=default_lock is None,
        default=default_lock,
        help="the platform's dask-env lock file (default: $DASK_ENV_LOCK, else the environment's own)",
    )
    parser.add_argument("--only-critical", action="store_true", help="ignore differences in non-critical packages")
    args = parser.parse_args(argv)
    try:
        pins = read_lock(args.lock)
    except (OSError, ValueError) as exc:
        print(f"cannot read the lock: {exc}", file=sys.stderr)
        return 2
    diffs = compare(pins, installed_versions())
    if args.only_critical:
        diffs = [d for d in diffs if d[3]]
    if not diffs:
        print(f"OK: all {len(pins)} locked packages match {args.lock}")
        return 0
    print(f"{len(diffs)} package(s) differ from {args.lock}:")
    for name, want, have, critical in diffs:
        flag = "MISMATCH" if critical else "differs "
        print(f"  {flag} {name}: lock {want}, installed {have}")
    print("Install the lock into this environment: pip install -r " + args.lock)
    return 1 if any(d[3] for d in diffs) or not args.only_critical else 0


if __name__ == "__main__":
    sys.exit(main())
