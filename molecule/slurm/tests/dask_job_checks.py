"""Run by alice on the controller: connect to her Slurm-started scheduler, compute, and report
which users and hosts the workers run as. Prints one JSON line."""

from __future__ import annotations

import getpass
import json
import socket
import sys

from distributed import Client


def whoami():
    return getpass.getuser(), socket.gethostname()


def main() -> None:
    with Client(sys.argv[1], timeout=120) as client:
        client.wait_for_workers(1, timeout=120)
        total = client.submit(sum, client.map(lambda i: i * i, range(1000))).result()
        seen = client.run(whoami)
    print(
        json.dumps(
            {
                "total": total,
                "users": sorted({u for u, _h in seen.values()}),
                "hosts": sorted({h for _u, h in seen.values()}),
            }
        )
    )


if __name__ == "__main__":
    main()
