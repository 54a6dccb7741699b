"""dataplatform-journal-export (dataplatform_dask.node.journal_export) with a stand-in journalctl on PATH."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dataplatform_dask.node import journal_export

# As journal-export@.service runs it (the dataplatform-journal-export console script: cli()).
CLI = [sys.executable, "-m", "dataplatform_dask.node.journal_export"]


def entry(n: int, message: object = None) -> dict:
    return {
        "__CURSOR": f"s=abc;i={n}",
        "__REALTIME_TIMESTAMP": str(1_795_000_000_000_000 + n),
        "SYSLOG_IDENTIFIER": "dask-scheduler",
        "_PID": "42",
        "MESSAGE": f"line {n}" if message is None else message,
    }


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("hello", "hello"),
        ([104, 105, 255], "hi\ufffd"),
        ("two\nlines", "two lines"),
        (None, "line 7"),
    ],
    ids=["text", "bytes", "newline", "plain"],
)
def test_format_entry(message: object, expected: str) -> None:
    line = journal_export.format_entry(entry(7, message))
    assert line == f"2026-11-18T11:06:40.000007+00:00 dask-scheduler[42]: {expected}\n"


def test_first_start_copies_everything_then_continues_after_the_cursor(tmp_path: Path) -> None:
    cursor = tmp_path / "unit.cursor"
    assert journal_export.journalctl_args("dask-worker.service", str(cursor))[-1] == "--lines=all"
    cursor.write_text("s=abc;i=3\n")
    assert journal_export.journalctl_args("dask-worker.service", str(cursor))[-1] == "--after-cursor=s=abc;i=3"


def _fake_journalctl(bin_dir: Path, entries: list[dict], linger: float) -> None:
    bin_dir.mkdir()
    script = bin_dir / "journalctl"
    lines = "\n".join(json.dumps(e) for e in entries)
    script.write_text(
        f"#!{sys.executable}\nimport sys, time\nprint(sys.argv[1:], file=sys.stderr)\n"
        f"sys.stdout.write({lines!r} + '\\n')\nsys.stdout.flush()\ntime.sleep({linger})\n"
    )
    script.chmod(0o755)


def test_sigterm_keeps_the_cursor_of_the_last_line_written(tmp_path: Path) -> None:
    _fake_journalctl(tmp_path / "bin", [entry(1), entry(2), entry(3)], linger=30)
    out, cursor = tmp_path / "unit.log", tmp_path / "unit.cursor"
    env = os.environ | {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.Popen([*CLI, "dask-scheduler.service", str(out), str(cursor)], env=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") == 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert [line.split(": ", 1)[1] for line in out.read_text().splitlines()] == ["line 1", "line 2", "line 3"]
    assert cursor.read_text() == "s=abc;i=3"
