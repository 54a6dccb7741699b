"""Copy one systemd unit's journal to a file that the CloudWatch agent tails.

    journal_export.py UNIT OUTPUT_FILE CURSOR_FILE

Follows ``journalctl --output=json`` for UNIT and appends one line per entry
(``<ISO time> <identifier>[<pid>]: <message>``). The cursor of the last entry written is
kept in CURSOR_FILE (at most a second behind, and on SIGTERM), and a restart continues
after it: restarts neither lose nor repeat lines. The first start copies the unit's whole
journal. Installed by the dataplatform.dask cw_agent role.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time


def format_entry(entry: dict) -> str:
    """One journal entry (journalctl's JSON) as a syslog-like line."""
    micros = int(entry.get("__REALTIME_TIMESTAMP", "0"))
    when = datetime.datetime.fromtimestamp(micros / 1_000_000, tz=datetime.timezone.utc)
    ident = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "-"
    pid = entry.get("_PID") or entry.get("SYSLOG_PID") or ""
    message = entry.get("MESSAGE", "")
    if isinstance(message, list):  # journalctl encodes non-UTF-8 messages as byte arrays
        message = bytes(message).decode("utf-8", errors="replace")
    elif message is None:
        message = ""
    message = message.replace("\n", " ")
    return f"{when.isoformat(timespec='microseconds')} {ident}[{pid}]: {message}\n"


def save_cursor(path: str, cursor: str | None) -> None:
    if not cursor:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(cursor)
    os.replace(tmp, path)


def journalctl_args(unit: str, cursor_path: str) -> list[str]:
    args = ["journalctl", "--follow", "--output=json", f"--unit={unit}"]
    try:
        with open(cursor_path) as f:
            cursor = f.read().strip()
    except FileNotFoundError:
        cursor = ""
    return [*args, f"--after-cursor={cursor}"] if cursor else [*args, "--lines=all"]


def main(unit: str, out_path: str, cursor_path: str) -> int:
    last_cursor: str | None = None

    def stop(_signum: int, _frame: object) -> None:
        save_cursor(cursor_path, last_cursor)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    proc = subprocess.Popen(journalctl_args(unit, cursor_path), stdout=subprocess.PIPE, text=True)  # noqa: S603
    saved_at = time.monotonic()
    with open(out_path, "a", encoding="utf-8") as out:
        for line in proc.stdout:
            entry = json.loads(line)
            out.write(format_entry(entry))
            out.flush()
            last_cursor = entry.get("__CURSOR", last_cursor)
            if time.monotonic() - saved_at >= 1:
                save_cursor(cursor_path, last_cursor)
                saved_at = time.monotonic()
    save_cursor(cursor_path, last_cursor)
    return proc.wait()


def cli() -> int:
    """The console script: ``dataplatform-journal-export UNIT OUT_FILE CURSOR_FILE``."""
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    return main(*sys.argv[1:])


if __name__ == "__main__":
    sys.exit(cli())
