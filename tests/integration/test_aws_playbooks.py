"""The AWS side of the playbooks against the extended moto server on 127.0.0.1.

scale.yml, autoscaling.yml and rolling_update.yml each run four times (check, apply,
check, apply) with ``changed`` asserted every time; what moto holds afterwards is read
back with boto3. inventory/aws_ec2.yml is checked with ``ansible-inventory --graph``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.moto_fleet import clients, image_ids, make_group
from tests.peers.moto_process import MotoServer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REGION = "eu-west-1"
GROUP = "dask-workers"
TAGS = {"Project": "dataplatform", "Cluster": "itest"}


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("aws_moto") / "moto.log", REGION)
    with server:
        yield server


@pytest.fixture
def aws(moto: MotoServer) -> dict[str, object]:
    moto.reset()
    names = ("autoscaling", "ec2", "cloudwatch")
    return dict(zip(names, clients(moto.url, *names, region=REGION), strict=True))


def images(ec2, count: int = 2) -> list[str]:
    return image_ids(ec2, count)


@pytest.fixture
def fleet(aws: dict[str, object]) -> dict[str, object]:
    """Launch template dask-worker v1 and 4 tagged workers in ASG dask-workers (1..20)."""
    ec2, asg = aws["ec2"], aws["autoscaling"]
    lt = make_group(
        ec2,
        asg,
        GROUP,
        min_size=1,
        max_size=20,
        desired=4,
        template="dask-worker",
        tags={**TAGS, "Role": "worker"},
    )
    return {**aws, "lt": lt}


def group(asg) -> dict:
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]


def run(moto: MotoServer, *args: str, check: bool = False, extra: dict | None = None) -> dict:
    """Run ansible-playbook/ansible-inventory from the repo venv; return rc, JSON result and output."""
    env = dict(os.environ, **moto.env)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    env.update(extra or {})
    cmd = [str(BIN / "ansible-playbook"), *args, "-e", f"ansible_python_interpreter={sys.executable}"]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    try:
        # The JSON document is the callback's; anything an aggregate callback prints follows it.
        result, _end = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])
    except (ValueError, json.JSONDecodeError):
        pytest.fail(f"no JSON from {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result["rc"] = proc.returncode
    return result


def stats(result: dict) -> dict:
    return result["stats"]["localhost"]


def changed_tasks(result: dict) -> list[str]:
    names = []
    for play in result["plays"]:
        for task in play["tasks"]:
            if any(r.get("changed") for r in task["hosts"].values()):
                names.append(task["task"]["name"].split(" : ")[-1])
    return names


def failure_messages(result: dict) -> str:
    msgs = []
    for play in result["plays"]:
        for task in play["tasks"]:
            for res in task["hosts"].values():
                if res.get("failed"):
                    msgs.append(str(res.get("msg", "")))
    return "\n".join(msgs)


def four_runs(moto: MotoServer, *args: str) -> list[dict]:
    """check, apply, check, apply: the first two change, the last two do not."""
    runs = [run(moto, *args, check=c) for c in (True, False, True, False)]
    for i, r in enumerate(runs):
        assert r["rc"] == 0, f"run {i} failed: {failure_messages(r)}"
    assert [stats(r)["changed"] > 0 for r in runs] == [True, True, False, False], [changed_tasks(r) for r in runs]
    return runs


# --- scale.yml ---------------------------------------------------------------------------


def test_scale_four_runs(moto, fleet):
    asg = fleet["autoscaling"]
    runs = four_runs(
        moto, "playbooks/scale.yml", "-e", "dask_scale_desired_capacity=6", "-e", "dask_scale_wait_delay=1"
    )
    assert changed_tasks(runs[0]) == changed_tasks(runs[1]) == ["Set the fleet bounds"]
    g = group(asg)
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (5, 20, 6)
    assert len([i for i in g["Instances"] if i["LifecycleState"] == "InService"]) == 6


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["-e", "dask_scale_desired_capacity=25"], "<= dask_scale_max_size (20)"),
        (["-e", "dask_scale_max_size=30"], "<= dask_scale_node_limit (20)"),
        (["-e", "dask_scale_min_size=1", "-e", "dask_scale_desired_capacity=2"], "would go from 4 to 2 workers"),
    ],
)
def test_scale_refuses_bad_or_unsafe_bounds(moto, fleet, extra, fragment):
    asg = fleet["autoscaling"]
    result = run(moto, "playbooks/scale.yml", *extra)
    assert result["rc"] != 0
    assert fragment in failure_messages(result)
    g = group(asg)
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (1, 20, 4)


def test_scale_in_when_allowed(moto, fleet):
    result = run(
        moto,
        "playbooks/scale.yml",
        *("-e", "dask_scale_min_size=1", "-e", "dask_scale_desired_capacity=2", "-e", "dask_scale_allow_scale_in=true"),
        *("-e", "dask_scale_wait_delay=1"),
    )
    assert result["rc"] == 0, failure_messages(result)
    assert group(fleet["autoscaling"])["DesiredCapacity"] == 2


# --- autoscaling.yml ----------------------------------------------------------------------


def test_autoscaling_policies_four_runs(moto, fleet):
    asg, cw = fleet["autoscaling"], fleet["cloudwatch"]
    runs = four_runs(moto, "playbooks/autoscaling.yml", "-e", "dask_autoscaling_cluster_name=itest")
    assert changed_tasks(runs[1]) == [
        "Set the fleet bounds of dask-workers",
        "Scale up on a long queue or busy CPUs",
        "Scale down when the queue is short and the CPUs idle",
    ]
    g = group(asg)
    assert (g["MinSize"], g["MaxSize"]) == (5, 20)
    policies = {p["PolicyName"]: p for p in asg.describe_policies(AutoScalingGroupName=GROUP)["ScalingPolicies"]}
    assert {n: (p["ScalingAdjustment"], p["Cooldown"]) for n, p in policies.items()} == {
        "dask-workers-scale-up": (2, 300),
        "dask-workers-scale-down": (-1, 300),
    }
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    queue = alarms["dask-workers-queue-high"]
    assert (queue["Namespace"], queue["MetricName"], queue["Threshold"]) == ("Dask/Cluster", "QueuedTasks", 10.0)
    assert queue["Dimensions"] == [{"Name": "ClusterName", "Value": "itest"}]
    assert queue["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarms["dask-workers-cpu-high"]["Threshold"] == 70.0
    assert alarms["dask-workers-cpu-high"]["AlarmActions"] == [policies["dask-workers-scale-up"]["PolicyARN"]]
    idle = alarms["dask-workers-idle"]
    assert idle["AlarmActions"] == [policies["dask-workers-scale-down"]["PolicyARN"]]
    expression = next(m["Expression"] for m in idle["Metrics"] if "Expression" in m)
    assert expression == "IF(queued < 2 AND cpu < 30, 1, 0)"
    stats_by_id = {m["Id"]: m["MetricStat"]["Metric"] for m in idle["Metrics"] if "MetricStat" in m}
    assert stats_by_id["queued"]["MetricName"] == "QueuedTasks"
    assert stats_by_id["cpu"]["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": GROUP}]


def test_autoscaling_refuses_more_than_twenty_nodes(moto, fleet):
    result = run(moto, "playbooks/autoscaling.yml", "-e", "dask_autoscaling_max_size=21")
    assert result["rc"] != 0
    assert "dask_autoscaling_node_limit" in failure_messages(result)
    assert fleet["autoscaling"].describe_policies(AutoScalingGroupName=GROUP)["ScalingPolicies"] == []


# --- rolling_update.yml -------------------------------------------------------------------


def rolling_args(tmp_path: Path, *extra: str) -> list[str]:
    probe = ROOT / "tests" / "peers" / "moto_retire_probe.py"
    return [
        "playbooks/rolling_update.yml",
        *("-e", "ansible_connection=local"),
        *("-e", f"dask_rolling_retire_command='{sys.executable} {probe} {{{{ item }}}} {tmp_path / 'retired.log'}'"),
        *("-e", "dask_rolling_min_healthy_percentage=50"),
        *("-e", "dask_rolling_poll_delay=1"),
        *("-e", "dask_rolling_timeout=120"),
        *("-e", "dask_rolling_checkpoint_delay=0"),
        *extra,
    ]


def test_rolling_update_four_runs_retires_every_worker_while_held(moto, fleet, tmp_path):
    asg, ec2 = fleet["autoscaling"], fleet["ec2"]
    old = sorted(i["InstanceId"] for i in group(asg)["Instances"])
    new_ami = images(ec2)[1]
    runs = four_runs(moto, *rolling_args(tmp_path, "-e", f"dask_rolling_image_id={new_ami}"))
    assert "Hold leaving workers until they are retired" in changed_tasks(runs[0])
    assert "Start the instance refresh" in changed_tasks(runs[1])
    assert "Let the retired workers go" in changed_tasks(runs[1])

    retired = (tmp_path / "retired.log").read_text().split("\n")
    retired = sorted(line.split() for line in retired if line)
    assert [r[0] for r in retired] == old, "each old worker is retired exactly once"
    assert {r[1] for r in retired} == {"Terminating:Wait"}, "retired while the hook held it"

    g = group(asg)
    assert g["LaunchTemplate"]["Version"] == "2"
    assert len(g["Instances"]) == 4
    assert not set(old) & {i["InstanceId"] for i in g["Instances"]}
    ids = [i["InstanceId"] for i in g["Instances"]]
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    assert {i["ImageId"] for r in reservations for i in r["Instances"]} == {new_ami}
    hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName=GROUP)["LifecycleHooks"]
    assert [(h["LifecycleHookName"], h["LifecycleTransition"]) for h in hooks] == [
        ("dask-worker-retire", "autoscaling:EC2_INSTANCE_TERMINATING")
    ]


def test_rolling_update_stops_and_reports_lost_workers(moto, fleet, tmp_path):
    asg, ec2, lt = fleet["autoscaling"], fleet["ec2"], fleet["lt"]
    broken = ec2.create_launch_template_version(
        LaunchTemplateId=lt["LaunchTemplateId"],
        SourceVersion="1",
        LaunchTemplateData={"ImageId": "ami-00000000000dead"},
    )["LaunchTemplateVersion"]["VersionNumber"]
    result = run(
        moto,
        *rolling_args(
            tmp_path,
            *("-e", "dask_rolling_launch_template=dask-worker"),
            *("-e", f"dask_rolling_launch_template_version={broken}"),
        ),
    )
    assert result["rc"] != 0
    message = failure_messages(result)
    assert "rolling_update stopped on ASG dask-workers" in message
    assert "is Failed" in message
    assert "ami-00000000000dead" in message
    assert "2 of 4 workers in service, 2 lost and not replaced" in message
    # The first batch was retired gracefully before AWS tried (and failed) to replace it.
    assert len((tmp_path / "retired.log").read_text().split()) == 4
    refresh = asg.describe_instance_refreshes(AutoScalingGroupName=GROUP)["InstanceRefreshes"][0]
    assert refresh["Status"] == "Failed"
    assert group(asg)["LaunchTemplate"]["Version"] == "1"


def test_rolling_update_times_out_cancels_and_reports(moto, fleet, tmp_path):
    asg = fleet["autoscaling"]
    # A suspended InstanceRefresh process pauses the refresh: it never gets anywhere.
    asg.suspend_processes(AutoScalingGroupName=GROUP, ScalingProcesses=["InstanceRefresh"])
    result = run(
        moto,
        *rolling_args(
            tmp_path, "-e", f"dask_rolling_image_id={images(fleet['ec2'])[1]}", "-e", "dask_rolling_timeout=4"
        ),
    )
    assert result["rc"] != 0
    message = failure_messages(result)
    assert "still InProgress at 0% after 4 s and was cancelled" in message
    assert "4 of 4 workers in service" in message
    assert "paused" in message
    refresh = asg.describe_instance_refreshes(AutoScalingGroupName=GROUP)["InstanceRefreshes"][0]
    assert refresh["Status"] in ("Cancelling", "Cancelled")
    assert not (tmp_path / "retired.log").exists()


def test_rolling_update_refuses_while_another_refresh_runs(moto, fleet, tmp_path):
    asg = fleet["autoscaling"]
    running = asg.start_instance_refresh(AutoScalingGroupName=GROUP)["InstanceRefreshId"]
    result = run(moto, *rolling_args(tmp_path, "-e", f"dask_rolling_image_id={images(fleet['ec2'])[1]}"))
    assert result["rc"] != 0
    assert f"refusing, refresh {running} is already" in failure_messages(result)
    assert len(asg.describe_instance_refreshes(AutoScalingGroupName=GROUP)["InstanceRefreshes"]) == 1


# --- inventory/aws_ec2.yml ----------------------------------------------------------------


def test_inventory_groups_from_role_tags(moto, fleet):
    ec2 = fleet["ec2"]

    def launch(role: str, cluster: str = "itest") -> str:
        tags = [{"Key": k, "Value": v} for k, v in {**TAGS, "Cluster": cluster, "Role": role}.items()]
        return ec2.run_instances(
            ImageId=images(ec2)[0],
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]

    scheduler, gateway = launch("scheduler"), launch("gateway")
    stopped = launch("worker")
    ec2.stop_instances(InstanceIds=[stopped])
    other = launch("worker", cluster="other")
    workers = sorted(i["InstanceId"] for i in group(fleet["autoscaling"])["Instances"])

    env = dict(os.environ, **moto.env, DASK_CLUSTER="itest", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".cache" / "collections")
    cmd = [str(BIN / "ansible-inventory"), "-i", "inventory/aws_ec2.yml"]
    listing = subprocess.run(
        [*cmd, "--list"], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    inventory = json.loads(listing.stdout)
    assert inventory["dask_scheduler"]["hosts"] == [scheduler]
    assert inventory["dask_gateway"]["hosts"] == [gateway]
    assert sorted(inventory["dask_worker"]["hosts"]) == workers
    hostvars = inventory["_meta"]["hostvars"]
    assert stopped not in hostvars
    assert other not in hostvars
    private_ip = ec2.describe_instances(InstanceIds=[scheduler])["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
    ansible_host = hostvars[scheduler]["ansible_host"]
    # ansible-inventory marks values that came from AWS as unsafe: {"__ansible_unsafe": "..."}.
    assert (ansible_host.get("__ansible_unsafe") if isinstance(ansible_host, dict) else ansible_host) == private_ip

    graph = subprocess.run(
        [*cmd, "--graph"], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    assert "@dask_scheduler:" in graph.stdout
    assert f"|--{scheduler}" in graph.stdout
    assert "@dask_worker:" in graph.stdout
    assert "@dask_gateway:" in graph.stdout
