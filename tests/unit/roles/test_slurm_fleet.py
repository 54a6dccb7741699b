"""The Slurm fleet hooks against moto's Auto Scaling and EC2 (with the project's lifecycle-action
extension) and a fake Slurm: resume raises desired capacity up to the cap, suspend terminates
exactly the idle node's instance with a decrement, the lifecycle handler drains and lets go."""

from __future__ import annotations

import pytest
from dataplatform_dask.fleet import slurm_fleet
from fleet_aws import GROUP, HOOK, REGION, fleet_group
from moto.autoscaling.models import autoscaling_backends
from moto.core import DEFAULT_ACCOUNT_ID

from tests.peers import moto_ext

moto_ext.patch()


class FakeSlurm:
    """Nodes with their jobs and states; records every change the hooks make."""

    def __init__(self, nodes):
        self.nodes = dict(nodes)  # name -> list of job ids
        self.drained = []
        self.resumed = []
        self.deleted = []

    def run(self, args):
        if args[:3] == ["scontrol", "show", "hostnames"]:
            text = args[3]
            if "[" in text:
                prefix, rng = text.rstrip("]").split("[")
                lo, hi = (int(x) for x in rng.split("-"))
                return 0, "\n".join(f"{prefix}{i}" for i in range(lo, hi + 1)), ""
            return 0, "\n".join(text.split(",")), ""
        if args[0] == "squeue":
            return 0, "\n".join(self.nodes.get(args[3], [])), ""
        if args[:3] == ["scontrol", "show", "node"]:
            return (0, "", "") if args[3] in self.nodes else (1, "", "Node not found")
        _key, _sep, node = args[2].partition("=")
        if args[1] == "update" and "state=drain" in args:
            self.drained.append(node)
        elif args[1] == "update" and "state=resume" in args:
            self.resumed.append(node)
        elif args[1] == "delete":
            self.deleted.append(node)
            self.nodes.pop(node, None)
        return 0, "", ""


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("SLURM_FLEET_ASG", GROUP)
    with fleet_group(monkeypatch, 1, 25, 3, hook=True, protected=True) as clients:
        yield clients


def group(autoscaling):
    return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]


def node_names(autoscaling, ec2):
    """{instance id: host name} of the group's members, as slurmd -Z would register them."""
    ids = [i["InstanceId"] for i in group(autoscaling)["Instances"]]
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["PrivateDnsName"].split(".")[0] for r in reservations for i in r["Instances"]}


def fleet(autoscaling, ec2, slurm, **kw):
    return slurm_fleet.Fleet(
        GROUP, slurm_fleet.Slurm(slurm.run), autoscaling=autoscaling, ec2=ec2, hook_name=HOOK, **kw
    )


def test_resume_raises_desired_capacity_by_the_nodes_asked(aws):
    autoscaling, ec2 = aws
    slurm = FakeSlurm({})
    assert (
        slurm_fleet.main(
            ["resume", "fleet-[1-4]"], slurm=slurm_fleet.Slurm(slurm.run), fleet=fleet(autoscaling, ec2, slurm)
        )
        == 0
    )
    assert group(autoscaling)["DesiredCapacity"] == 7


@pytest.mark.parametrize(("max_nodes", "expected"), [(20, 20), (8, 8), (50, 20)])
def test_resume_never_goes_above_the_cap(aws, max_nodes, expected):
    autoscaling, ec2 = aws
    assert fleet(autoscaling, ec2, FakeSlurm({}), max_nodes=max_nodes).resume([f"n{i}" for i in range(30)]) == expected
    assert group(autoscaling)["DesiredCapacity"] == expected


def test_suspend_terminates_only_the_idle_nodes_instance_with_a_decrement(aws):
    autoscaling, ec2 = aws
    names = node_names(autoscaling, ec2)
    (idle_id, idle), (busy_id, busy), _third = sorted(names.items())
    slurm = FakeSlurm({idle: [], busy: ["42"]})
    terminated = fleet(autoscaling, ec2, slurm).suspend([idle, busy])
    assert terminated == [idle_id]
    after = group(autoscaling)
    assert after["DesiredCapacity"] == 2
    assert idle_id not in {i["InstanceId"] for i in after["Instances"] if i["LifecycleState"] == "InService"}
    assert busy_id in {i["InstanceId"] for i in after["Instances"]}
    assert slurm.drained == [idle]  # drained before it went; the busy node was never touched
    assert slurm.deleted == [idle]


def test_suspend_keeps_the_last_node_at_the_minimum(aws):
    autoscaling, ec2 = aws
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=GROUP, MinSize=3)
    names = node_names(autoscaling, ec2)
    node = sorted(names.values())[0]
    assert fleet(autoscaling, ec2, FakeSlurm({node: []})).suspend([node]) == []
    assert group(autoscaling)["DesiredCapacity"] == 3


def test_lifecycle_drains_waits_for_busy_and_completes_idle(aws):
    autoscaling, ec2 = aws
    names = node_names(autoscaling, ec2)
    (idle_id, idle), (busy_id, busy), (other_id, other) = sorted(names.items())
    backend = autoscaling_backends[DEFAULT_ACCOUNT_ID][REGION]
    for state in backend.autoscaling_groups[GROUP].instance_states:
        if state.instance.id in (idle_id, busy_id):
            state.lifecycle_state = "Terminating:Wait"
    slurm = FakeSlurm({idle: [], busy: ["7"], other: ["8"]})
    result = fleet(autoscaling, ec2, slurm).lifecycle()
    assert result["completed"] == [idle_id]
    assert result["waiting"] == [busy_id]
    assert sorted(slurm.drained) == sorted([idle, busy])
    states = {i["InstanceId"]: i["LifecycleState"] for i in group(autoscaling)["Instances"]}
    assert states[idle_id] == "Terminating:Proceed"
    assert states[busy_id] == "Terminating:Wait"
    # Protection follows the work: the busy in-service node stays protected.
    assert result["protected"] == [] and result["unprotected"] == []
    protected = {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in group(autoscaling)["Instances"]}
    assert protected[other_id] is True
    # When the busy node's job ends, the next pass lets it go.
    slurm.nodes[busy] = []
    assert fleet(autoscaling, ec2, slurm).lifecycle()["completed"] == [busy_id]


def test_lifecycle_unprotects_idle_nodes_and_protects_busy_ones(aws):
    autoscaling, ec2 = aws
    names = node_names(autoscaling, ec2)
    (a_id, a), (b_id, b), (c_id, c) = sorted(names.items())
    autoscaling.set_instance_protection(AutoScalingGroupName=GROUP, InstanceIds=[c_id], ProtectedFromScaleIn=False)
    slurm = FakeSlurm({a: [], b: [], c: ["9"]})
    result = fleet(autoscaling, ec2, slurm).lifecycle()
    assert sorted(result["unprotected"]) == sorted([a_id, b_id])
    assert result["protected"] == [c_id]
    assert fleet(autoscaling, ec2, slurm).lifecycle() == {
        "completed": [],
        "waiting": [],
        "protected": [],
        "unprotected": [],
    }


def test_unknown_group_is_reported_by_name(aws, capsys):
    autoscaling, ec2 = aws
    slurm = FakeSlurm({})
    broken = slurm_fleet.Fleet("no-such-group", slurm_fleet.Slurm(slurm.run), autoscaling=autoscaling, ec2=ec2)
    assert slurm_fleet.main(["resume", "n1"], slurm=slurm_fleet.Slurm(slurm.run), fleet=broken) == 1
    assert "ASG no-such-group not found" in capsys.readouterr().err


def test_usage_and_missing_group_setting(monkeypatch, capsys):
    monkeypatch.delenv("SLURM_FLEET_ASG", raising=False)
    assert slurm_fleet.main(["resume"]) == 2
    assert slurm_fleet.main(["resume", "n1"]) == 2
    assert "SLURM_FLEET_ASG is not set" in capsys.readouterr().err


def test_suspend_goes_on_past_a_node_slurm_does_not_know(aws, capsys):
    autoscaling, ec2 = aws
    names = node_names(autoscaling, ec2)
    idle_id, idle = sorted(names.items())[0]
    slurm = FakeSlurm({idle: []})
    real_run = slurm.run

    def run(args):
        if args[0] == "squeue" and args[3] == "ghost":
            return 1, "", "squeue: error: Invalid node name specified"
        return real_run(args)

    broken = slurm_fleet.Fleet(GROUP, slurm_fleet.Slurm(run), autoscaling=autoscaling, ec2=ec2, hook_name=HOOK)
    with pytest.raises(slurm_fleet.FleetError, match="failed for ghost"):
        broken.suspend(["ghost", idle])
    assert group(autoscaling)["DesiredCapacity"] == 2  # the idle node still went
    assert (
        "suspend ghost: list jobs on ghost: squeue -h failed: squeue: error: Invalid node name"
        in capsys.readouterr().err
    )
    assert idle_id not in {
        i["InstanceId"] for i in group(autoscaling)["Instances"] if i["LifecycleState"] == "InService"
    }
