"""The cw_agent role's rendered agent configuration, checked against the agent's schema.

The templates are rendered by Ansible itself (one ansible-playbook run per case, with the
role's defaults and vars as extra vars) and the JSON is validated against the vendored
schema in tests/unit/data/amazon-cloudwatch-agent/ (see the README there for its source).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "cw_agent"
SCHEMA = json.loads((Path(__file__).parent / "data" / "amazon-cloudwatch-agent" / "schema.json").read_text())
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Render the agent configuration
      ansible.builtin.template:
        src: {role}/templates/amazon-cloudwatch-agent.json.j2
        dest: {out}/agent.json
        mode: "0644"
    - name: Render the scrape configuration
      ansible.builtin.template:
        src: {role}/templates/prometheus.yaml.j2
        dest: {out}/prometheus.yaml
        mode: "0644"
"""
BASE = {
    "cw_agent_scrape_server_name": "scheduler.dask.example.internal",
    "ansible_python_interpreter": sys.executable,
}


def render(tmp_path: Path, **overrides) -> tuple[dict, dict]:
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(role=ROLE, out=tmp_path))
    (tmp_path / "case.json").write_text(json.dumps(BASE | overrides))
    bin_dir = Path(sys.executable).parent
    cmd = [
        str(bin_dir / "ansible-playbook"),
        "-i",
        "localhost,",
        "-e",
        f"@{ROLE / 'defaults' / 'main.yml'}",
        "-e",
        f"@{ROLE / 'vars' / 'main.yml'}",
        "-e",
        f"@{ROLE / 'vars' / 'Debian.yml'}",
        "-e",
        f"@{tmp_path / 'case.json'}",
        str(tmp_path / "play.yml"),
    ]
    env = os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    agent = json.loads((tmp_path / "agent.json").read_text())
    prometheus = yaml.safe_load((tmp_path / "prometheus.yaml").read_text())
    return agent, prometheus


@pytest.fixture(scope="module")
def default_agent(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return render(tmp_path_factory.mktemp("defaults"))[0]


def validate(config: dict) -> None:
    jsonschema.Draft4Validator(SCHEMA).validate(config)


def test_defaults_host_metrics_and_logs(tmp_path: Path) -> None:
    agent, prometheus = render(tmp_path)
    validate(agent)
    metrics = agent["metrics"]
    assert metrics["append_dimensions"] == {
        "InstanceId": "${aws:InstanceId}",
        "AutoScalingGroupName": "${aws:AutoScalingGroupName}",
    }
    assert ["AutoScalingGroupName"] in metrics["aggregation_dimensions"]
    collected = metrics["metrics_collected"]
    assert "cpu_usage_active" in collected["cpu"]["measurement"]
    assert "mem_used_percent" in collected["mem"]["measurement"]
    assert collected["disk"]["resources"] == ["/"]
    files = agent["logs"]["logs_collected"]["files"]["collect_list"]
    assert [(f["file_path"], f["log_group_name"], f["retention_in_days"]) for f in files] == [
        ("/var/log/dask-journal/dask-scheduler.log", "/dataplatform/dask/scheduler", 30),
        ("/var/log/dask-journal/dask-worker.log", "/dataplatform/dask/worker", 30),
        ("/var/log/dask-journal/dask-gateway.log", "/dataplatform/dask/gateway", 30),
    ]
    assert "metrics_collected" not in agent["logs"]
    assert "region" not in agent["agent"]
    assert prometheus["scrape_configs"] == []


def test_scheduler_host_publishes_the_shared_dask_metrics(tmp_path: Path) -> None:
    agent, prometheus = render(tmp_path, cw_agent_scrape_scheduler=True, cw_agent_cluster_name="prod")
    validate(agent)
    prom = agent["logs"]["metrics_collected"]["prometheus"]
    assert prom["prometheus_config_path"] == "/opt/aws/amazon-cloudwatch-agent/etc/dataplatform-prometheus.yaml"
    emf = prom["emf_processor"]
    assert emf["metric_namespace"] == "Dask/Cluster"
    selected = {sel.strip("^$") for decl in emf["metric_declaration"] for sel in decl["metric_selectors"]}
    assert selected == {"Workers", "QueuedTasks", "ProcessingTasks", "DesiredWorkers"}
    assert all(["ClusterName"] == decl["dimensions"][0][:1] for decl in emf["metric_declaration"])
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == "dask-scheduler"
    assert job["scheme"] == "https"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8787"], "labels": {"ClusterName": "prod"}}]
    assert job["tls_config"] == {"ca_file": "/etc/dask/tls/ca.crt", "server_name": "scheduler.dask.example.internal"}
    renames = {
        r["replacement"]: r["regex"] for r in job["metric_relabel_configs"] if r.get("target_label") == "__name__"
    }
    assert renames["QueuedTasks"] == "dask_scheduler_tasks;queued"
    assert renames["ProcessingTasks"] == "dask_scheduler_tasks;processing"
    assert prometheus["global"]["scrape_interval"] == "60s"


def test_worker_host_publishes_memory(tmp_path: Path) -> None:
    agent, prometheus = render(
        tmp_path,
        cw_agent_scrape_worker=True,
        cw_agent_scrape_scheme="http",
        cw_agent_metrics_collection_interval=30,
    )
    validate(agent)
    decls = agent["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_declaration"]
    assert [d["metric_selectors"] for d in decls] == [["^MemoryBytes$"]]
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == "dask-worker"
    assert "tls_config" not in job
    assert prometheus["global"]["scrape_interval"] == "30s"


def test_no_logs_no_scrape_and_region(tmp_path: Path) -> None:
    agent = render(tmp_path, cw_agent_log_units=[], cw_agent_region="eu-west-1")[0]
    validate(agent)
    assert "logs" not in agent
    assert agent["agent"]["region"] == "eu-west-1"


def test_client_certificate_for_the_scrape(tmp_path: Path) -> None:
    prometheus = render(
        tmp_path,
        cw_agent_scrape_scheduler=True,
        cw_agent_scrape_cert_file="/etc/dask/tls/agent.pem",
        cw_agent_scrape_key_file="/etc/dask/tls/agent.key",
    )[1]
    tls = prometheus["scrape_configs"][0]["tls_config"]
    assert tls["cert_file"] == "/etc/dask/tls/agent.pem"
    assert tls["key_file"] == "/etc/dask/tls/agent.key"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("logs", "logs_collected", "files", "collect_list", 0, "retention_in_days"), 2),
        (("metrics", "metrics_collected", "cpu", "measurement"), []),
        (("agent", "metrics_collection_interval"), 0),
    ],
    ids=["bad-retention", "cpu-without-measurement-is-fine-but-unknown-key-is-not", "zero-interval"],
)
def test_the_schema_rejects_broken_configs(default_agent: dict, path: tuple, value: object) -> None:
    agent = json.loads(json.dumps(default_agent))
    node = agent
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    if path[-1] == "measurement":
        # An empty measurement list is allowed by the schema; an unknown key in a closed object is not.
        validate(agent)
        agent["logs"]["logs_collected"]["files"]["collect_list"][0]["unknown"] = True
    with pytest.raises(jsonschema.ValidationError):
        validate(agent)
