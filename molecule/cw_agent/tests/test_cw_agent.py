"""cw_agent installed from a mirror holding a DUMMY agent package (see molecule.yml)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "tests" / "unit" / "data" / "amazon-cloudwatch-agent" / "schema.json").read_text())
HOME = "/opt/aws/amazon-cloudwatch-agent"


def test_package_from_the_mirror_layout(host) -> None:
    pkg = host.package("amazon-cloudwatch-agent")
    assert pkg.is_installed
    assert pkg.version == "0.0.0~dummy"


def test_agent_runs_under_systemd_with_the_rendered_config(host) -> None:
    svc = host.service("amazon-cloudwatch-agent")
    assert svc.is_enabled
    assert svc.is_running
    calls = host.file(f"{HOME}/logs/ctl-calls.log").content_string.splitlines()
    assert f"-a fetch-config -m onPremise -c file:{HOME}/etc/dataplatform.json -s" in [c.strip() for c in calls]
    loaded = host.file(f"{HOME}/etc/amazon-cloudwatch-agent.d/file_dataplatform").content_string
    assert loaded == host.file(f"{HOME}/etc/dataplatform.json").content_string


def test_rendered_config_matches_the_agent_schema(host) -> None:
    config = json.loads(host.file(f"{HOME}/etc/dataplatform.json").content_string)
    jsonschema.Draft4Validator(SCHEMA).validate(config)
    assert config["agent"]["region"] == "eu-west-1"
    prom = config["logs"]["metrics_collected"]["prometheus"]
    assert prom["emf_processor"]["metric_namespace"] == "Dask/Cluster"
    assert host.file(prom["prometheus_config_path"]).contains("QueuedTasks")


def _wait_for(host, path: str, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        f = host.file(path)
        content = f.content_string if f.exists else ""
        if text in content:
            return content
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s:\n{content[-2000:]}")


def test_scheduler_journal_reaches_the_file_the_agent_tails(host) -> None:
    token = f"journal-export-check-{uuid.uuid4().hex}"
    with host.sudo():
        host.run_expect([0], f"systemd-run --unit=dask-scheduler --collect --wait sh -c 'echo {token}; sleep 2'")
        content = _wait_for(host, "/var/log/dask-journal/dask-scheduler.log", f": {token}\n")
        # The service's own line (systemd's "Started ..." line also names the command).
        assert content.count(f": {token}\n") == 1
        # A restart continues after its cursor: the line is not copied twice.
        host.run_expect([0], "systemctl restart dataplatform-journal-export@dask-scheduler.service")
        time.sleep(2)
        assert host.file("/var/log/dask-journal/dask-scheduler.log").content_string.count(f": {token}\n") == 1
