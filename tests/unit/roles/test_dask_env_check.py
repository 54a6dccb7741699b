"""dask-env-check (dataplatform_dask.node.env_check): a client learns exactly which packages differ
from the platform lock."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from dataplatform_dask.node import env_check as check

ROOT = Path(__file__).resolve().parents[3]
LOCK = ROOT / "roles/_dask_env/files/dask-env.lock"
CLI = [sys.executable, "-m", "dataplatform_dask.node.env_check"]


def test_the_shipped_lock_is_all_exact_pins():
    pins = check.read_lock(str(LOCK))
    assert pins["dask"] == pins["distributed"] == "2026.8.0"
    assert {"bokeh", "prometheus-client", "dask-gateway-server", "pyarrow"} <= set(pins)


def test_the_dev_environment_matches_the_lock_on_critical_packages():
    # The controller's client stack is pinned to the same versions as the nodes.
    diffs = check.compare(check.read_lock(str(LOCK)), check.installed_versions())
    assert [d for d in diffs if d[3] and d[0] in {"dask", "distributed", "numpy", "pandas", "pyarrow"}] == []


def test_compare_reports_each_difference_and_marks_critical_ones():
    pins = {"dask": "2026.8.0", "distributed": "2026.8.0", "bokeh": "3.9.2", "zict": "3.0.0"}
    installed = {"dask": "2026.8.0", "distributed": "2026.7.1", "bokeh": "3.10.0"}
    assert check.compare(pins, installed) == [
        ("bokeh", "3.9.2", "3.10.0", False),
        ("distributed", "2026.8.0", "2026.7.1", True),
        ("zict", "3.0.0", "missing", False),
    ]


def test_lock_names_are_canonical(tmp_path):
    lock = tmp_path / "l.lock"
    lock.write_text("# comment\nPrometheus_Client==0.26.0\ndask[distributed]==2026.8.0  # trailing\n\n")
    assert check.read_lock(str(lock)) == {"prometheus-client": "0.26.0", "dask": "2026.8.0"}


def test_a_range_is_not_a_lock(tmp_path):
    lock = tmp_path / "l.lock"
    lock.write_text("dask>=2026.1\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        check.read_lock(str(lock))


def test_cli_names_the_mismatching_package(tmp_path):
    have = metadata.version("distributed")
    lock = tmp_path / "l.lock"
    lock.write_text(f"distributed==0.0.1\npytest=={metadata.version('pytest')}\n")
    out = subprocess.run([*CLI, "--lock", str(lock)], capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert f"MISMATCH distributed: lock 0.0.1, installed {have}" in out.stdout


def test_cli_ok_and_unreadable_lock(tmp_path):
    lock = tmp_path / "l.lock"
    lock.write_text(f"pytest=={metadata.version('pytest')}\n")
    ok = subprocess.run([*CLI, "--lock", str(lock)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0
    assert "OK: all 1 locked packages match" in ok.stdout
    missing = subprocess.run([*CLI, "--lock", str(tmp_path / "nope")], capture_output=True, text=True, check=False)
    assert missing.returncode == 2
    assert "cannot read the lock" in missing.stderr
