"""The Slurm fleet hooks as slurmctld runs them: the platform package's dataplatform-slurm-fleet
console script (what the role's wrapper execs from the Dask environment), a separate process,
settings from the environment, against the extended moto server. scontrol and squeue are small
fakes on PATH that record what the hooks asked of Slurm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.moto_fleet import clients, make_group
from tests.peers.moto_process import MotoServer

# The environment's console script, as slurm-fleet.sh execs <env>/bin/dataplatform-slurm-fleet.
FLEET = Path(sys.executable).parent / "dataplatform-slurm-fleet"
REGION = "eu-west-1"
GROUP = "slurm-fleet"
HOOK = "slurm-drain"

FAKE_SLURM = r"""
import json, os, sys
state_file = os.environ["FAKE_SLURM_STATE"]
state = json.load(open(state_file))
cmd, args = sys.argv[1], sys.argv[2:]
state["calls"].append([cmd] + args)
if cmd == "squeue":
    print("\n".join(state["jobs"].get(args[args.index("-w") + 1], [])))
elif args[:2] == ["show", "hostnames"]:
    print("\n".join(args[2].split(",")))
elif args[:2] == ["show", "node"]:
    json.dump(state, open(state_file, "w"))
    sys.exit(0 if args[2] in state["jobs"] else 1)
json.dump(state, open(state_file, "w"))
"""


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("slurm_moto") / "moto.log", REGION)
    with server:
        yield server


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """Fake scontrol/squeue for the hooks (the package itself is installed in this environment)."""
    assert FLEET.is_file(), f"{FLEET}: the platform package is not installed in this environment"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fake_slurm.py").write_text(FAKE_SLURM)
    for name in ("scontrol", "squeue"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec {sys.executable} {bin_dir}/fake_slurm.py {name} "$@"\n')
        script.chmod(0o755)
    return tmp_path


@pytest.fixture
def fleet(moto: MotoServer) -> dict:
    moto.reset()
    ec2, asg = clients(moto.url, "ec2", "autoscaling", region=REGION)
    make_group(ec2, asg, GROUP, min_size=0, max_size=30, desired=2, template="slurm-fleet", protected=True, hook=HOOK)
    return {"ec2": ec2, "asg": asg}


def hosts(fleet: dict) -> dict[str, str]:
    group = fleet["asg"].describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in group["Instances"]]
    reservations = fleet["ec2"].describe_instances(InstanceIds=ids)["Reservations"]
    return {i["PrivateDnsName"].split(".")[0]: i["InstanceId"] for r in reservations for i in r["Instances"]}


def hook(moto: MotoServer, installed: Path, jobs: dict, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    state_file = installed / "slurm-state.json"
    state_file.write_text(json.dumps({"jobs": jobs, "calls": []}))
    env = dict(
        os.environ,
        **moto.env,
        PATH=f"{installed / 'bin'}:{os.environ['PATH']}",
        FAKE_SLURM_STATE=str(state_file),
        SLURM_FLEET_ASG=GROUP,
        SLURM_FLEET_MAX_NODES="20",
        SLURM_FLEET_LIFECYCLE_HOOK=HOOK,
    )
    # Outside Ansible: no ansible_collections on the path, as on the controller node.
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(FLEET), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return done, json.loads(state_file.read_text())


def desired(fleet: dict) -> int:
    return fleet["asg"].describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0][
        "DesiredCapacity"
    ]


def test_resume_then_suspend_through_the_installed_hooks(moto, installed, fleet):
    done, _state = hook(moto, installed, {}, "resume", "fleet-a,fleet-b,fleet-c")
    assert done.returncode == 0, done.stderr
    assert desired(fleet) == 5
    assert "desired capacity 2 -> 5" in done.stderr

    done, _state = hook(moto, installed, {}, "resume", ",".join(f"n{i}" for i in range(40)))
    assert done.returncode == 0, done.stderr
    assert desired(fleet) == 20
    assert "capped at 20 nodes" in done.stderr

    names = hosts(fleet)
    idle, busy = sorted(names)[:2]
    done, state = hook(moto, installed, {idle: [], busy: ["12"]}, "suspend", f"{idle},{busy}")
    assert done.returncode == 0, done.stderr
    assert desired(fleet) == 19, done.stderr
    in_service = {
        i["InstanceId"]
        for i in fleet["asg"].describe_auto_scaling_instances()["AutoScalingInstances"]
        if i["LifecycleState"] == "InService"
    }
    assert names[idle] not in in_service
    assert names[busy] in in_service
    assert [
        "scontrol",
        "update",
        f"nodename={idle}",
        "state=drain",
        "reason=power save: instance terminating",
    ] in state["calls"]
    assert not any(c[:3] == ["scontrol", "update", f"nodename={busy}"] for c in state["calls"])


def test_lifecycle_pass_completes_idle_and_protects_busy(moto, installed, fleet):
    names = hosts(fleet)
    a, b = sorted(names)
    done, _state = hook(moto, installed, {a: [], b: ["5"]}, "lifecycle")
    assert done.returncode == 0, done.stderr
    protection = {
        i["InstanceId"]: i["ProtectedFromScaleIn"]
        for i in fleet["asg"].describe_auto_scaling_instances()["AutoScalingInstances"]
    }
    assert protection == {names[a]: False, names[b]: True}


def test_a_missing_group_fails_with_its_name(moto, installed, fleet):
    fleet["asg"].delete_auto_scaling_group(AutoScalingGroupName=GROUP, ForceDelete=True)
    done, _state = hook(moto, installed, {}, "resume", "n1")
    assert done.returncode == 1
    assert f"ASG {GROUP} not found" in done.stderr


def test_asg_helpers_import_without_ansible():
    """The controller node's Dask environment has boto3 but no Ansible: the package's asg must still import."""
    code = (
        "import sys; sys.modules['ansible_collections'] = None; "
        "from dataplatform_dask.module_utils import asg; from dataplatform_dask.fleet import slurm_fleet; "
        "print(asg.check_bounds(1, 20, 25))"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "desired_capacity=25 is above max_size=20: lower desired_capacity or raise max_size"
