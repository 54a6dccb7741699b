"""playbooks/monitoring.yml against a real moto_server on 127.0.0.1.

Each change runs four times (check, apply, check, apply) asserting ``changed`` each time,
and the alarms moto holds afterwards are read back with boto3.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "monitoring.yml"
REGION = "eu-west-1"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cw_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto_server of this module's own, on a random loopback port."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("cw_moto") / "moto.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    try:
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def aws(cw_moto: dict[str, str]) -> Iterator[dict[str, object]]:
    """Clients on the server; every test starts without alarms, topics or groups."""
    kw = {"endpoint_url": cw_moto["AWS_ENDPOINT_URL"], "region_name": REGION}
    kw |= {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    clients = {name: boto3.client(name, **kw) for name in ("cloudwatch", "sns", "autoscaling", "ec2")}
    yield clients
    cw = clients["cloudwatch"]
    names = [a["AlarmName"] for a in cw.describe_alarms()["MetricAlarms"]]
    if names:
        cw.delete_alarms(AlarmNames=names)
    for topic in clients["sns"].list_topics()["Topics"]:
        clients["sns"].delete_topic(TopicArn=topic["TopicArn"])
    asg = clients["autoscaling"]
    for group in asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
        asg.delete_auto_scaling_group(AutoScalingGroupName=group["AutoScalingGroupName"], ForceDelete=True)


def run(env: dict[str, str], *, check: bool = False, **extra: object) -> dict:
    """Run the playbook; return the json callback's stats for localhost (plus the failures)."""
    cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", str(PLAYBOOK), "-e", json.dumps(extra)]
    if check:
        cmd.append("--check")
    run_env = (
        os.environ
        | env
        | {
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        }
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, cwd=ROOT, check=False)
    # The json callback prints one document; profile_tasks (ansible.cfg) may print around it.
    start = proc.stdout.find("{")
    assert start >= 0, proc.stdout + proc.stderr
    out = json.JSONDecoder().raw_decode(proc.stdout[start:])[0]
    stats = out["stats"]["localhost"]
    failures = [
        host_result.get("msg", "")
        for play in out["plays"]
        for task in play["tasks"]
        for host_result in task["hosts"].values()
        if host_result.get("failed")
    ]
    changed_alarms = sorted(
        item["item"]["name"]
        for play in out["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Create the alarms"
        for item in task["hosts"].get("localhost", {}).get("results", [])
        if item.get("changed")
    )
    return stats | {"rc": proc.returncode, "failures": failures, "changed_alarms": changed_alarms}


def make_asg(aws: dict, name: str = "dask-workers", min_size: int = 2) -> None:
    aws["ec2"].create_launch_template(
        LaunchTemplateName=f"{name}-lt", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    aws["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": f"{name}-lt", "Version": "$Latest"},
        MinSize=min_size,
        MaxSize=10,
        DesiredCapacity=min_size,
        AvailabilityZones=[f"{REGION}a"],
    )


def alarms(aws: dict) -> dict[str, dict]:
    return {a["AlarmName"]: a for a in aws["cloudwatch"].describe_alarms()["MetricAlarms"]}


def test_check_apply_check_apply(cw_moto: dict[str, str], aws: dict) -> None:
    make_asg(aws, min_size=3)

    first_check = run(cw_moto, check=True)
    assert first_check["rc"] == 0, first_check["failures"]
    assert first_check["changed"] > 0
    assert len(first_check["changed_alarms"]) == 5
    assert alarms(aws) == {}, "check mode created alarms"
    assert aws["sns"].list_topics()["Topics"] == [], "check mode created the topic"

    apply = run(cw_moto)
    assert apply["rc"] == 0, apply["failures"]
    assert apply["changed"] > 0

    second_check = run(cw_moto, check=True)
    assert second_check["rc"] == 0, second_check["failures"]
    assert second_check["changed"] == 0

    second_apply = run(cw_moto)
    assert second_apply["rc"] == 0, second_apply["failures"]
    assert second_apply["changed"] == 0

    (topic,) = aws["sns"].list_topics()["Topics"]
    assert topic["TopicArn"].endswith(":dask-platform-alarms")
    found = alarms(aws)
    assert set(found) == {
        "dask-scheduler-down",
        "dask-workers-below-minimum",
        "dask-memory-exhaustion",
        "dask-cpu-high",
        "dask-queue-high",
    }
    expected = {
        "dask-scheduler-down": ("Dask/Cluster", "DesiredWorkers", "LessThanThreshold", 1.0, "breaching"),
        "dask-workers-below-minimum": ("Dask/Cluster", "Workers", "LessThanThreshold", 3.0, "missing"),
        "dask-memory-exhaustion": ("CWAgent", "mem_used_percent", "GreaterThanThreshold", 90.0, "missing"),
        "dask-cpu-high": ("AWS/EC2", "CPUUtilization", "GreaterThanThreshold", 85.0, "missing"),
        "dask-queue-high": ("Dask/Cluster", "QueuedTasks", "GreaterThanThreshold", 50.0, "missing"),
    }
    for name, (namespace, metric, comparison, threshold, missing) in expected.items():
        alarm = found[name]
        got = (alarm["Namespace"], alarm["MetricName"], alarm["ComparisonOperator"], alarm["Threshold"])
        assert (*got, alarm["TreatMissingData"]) == (namespace, metric, comparison, threshold, missing), name
        assert alarm["AlarmActions"] == [topic["TopicArn"]], name
        assert alarm["OKActions"] == [topic["TopicArn"]], name
    assert found["dask-queue-high"]["Dimensions"] == [{"Name": "ClusterName", "Value": "dask"}]
    assert found["dask-cpu-high"]["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": "dask-workers"}]
    assert found["dask-workers-below-minimum"]["Statistic"] == "Sum"


def test_changing_a_threshold_is_one_change(cw_moto: dict[str, str], aws: dict) -> None:
    settings = {"dask_monitoring_cluster_name": "prod", "dask_monitoring_workers_min": 4}
    assert run(cw_moto, **settings)["rc"] == 0
    raised = settings | {"dask_monitoring_queue_threshold": 120, "dask_monitoring_cpu_threshold": 70}

    results = [run(cw_moto, check=True, **raised), run(cw_moto, **raised)]
    results += [run(cw_moto, check=True, **raised), run(cw_moto, **raised)]
    assert [r["rc"] for r in results] == [0, 0, 0, 0], [r["failures"] for r in results]
    assert [r["changed_alarms"] for r in results] == [["cpu-high", "queue-high"]] * 2 + [[], []]
    assert [r["changed"] for r in results] == [1, 1, 0, 0]

    found = alarms(aws)
    assert found["prod-queue-high"]["Threshold"] == 120.0
    assert found["prod-cpu-high"]["Threshold"] == 70.0
    assert found["prod-workers-below-minimum"]["Threshold"] == 4.0


def test_missing_asg_fails_clearly_and_creates_nothing(cw_moto: dict[str, str], aws: dict) -> None:
    result = run(cw_moto, dask_monitoring_asg_name="no-such-group")
    assert result["rc"] != 0
    assert any("Auto Scaling group no-such-group: not found" in msg for msg in result["failures"]), result["failures"]
    assert alarms(aws) == {}
    assert aws["sns"].list_topics()["Topics"] == []


@pytest.mark.parametrize(
    "bad",
    [{"dask_monitoring_cpu_threshold": 150}, {"dask_monitoring_period": 45}, {"dask_monitoring_workers_min": "two"}],
    ids=["cpu-over-100", "period-45", "min-not-a-number"],
)
def test_bad_input_fails_before_any_change(cw_moto: dict[str, str], aws: dict, bad: dict) -> None:
    result = run(cw_moto, **bad)
    assert result["rc"] != 0
    assert any("dask_monitoring_" in msg for msg in result["failures"]), result["failures"]
    assert alarms(aws) == {}
