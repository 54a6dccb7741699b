"""Scale-out from a fully busy fleet: powered-down placeholder nodes for the room left in the ASG
(moto), ResumeProgram recording the wanted placeholder before it raises the capacity, the booting
instance claiming it in SSM Parameter Store (two instances booting together never take one node),
and suspend / the lifecycle hook terminating the claiming instance and freeing the placeholder."""

from __future__ import annotations

import boto3
import pytest
from dataplatform_dask.fleet import node_claim
from dataplatform_dask.fleet import slurm_fleet
from fleet_aws import GROUP, HOOK, REGION, fleet_group
from moto.autoscaling.models import autoscaling_backends
from moto.core import DEFAULT_ACCOUNT_ID

from tests.peers import moto_ext

moto_ext.patch()

CLAIMS = "/dataplatform/slurm/test"


class FakeSlurm:
    """slurmctld's node table: name -> {"states", "cpus", "mem", "features", "jobs"}."""

    def __init__(self, nodes):
        self.nodes = {name: dict({"cpus": 2, "mem": 2000, "features": "fleet", "jobs": []}, **n) for name, n in nodes}
        self.calls = []

    def line(self, name):
        n = self.nodes[name]
        reason = f" Reason={n['reason']} [slurm@2026-12-03T15:00:00]" if n.get("reason") else ""
        return (
            f"NodeName={name} CPUTot={n['cpus']} AvailableFeatures={n['features']} RealMemory={n['mem']} "
            f"State={n['states']} Partitions=workers{reason}"
        )

    def run(self, args):
        self.calls.append(args)
        if args[:4] == ["scontrol", "show", "node", "--oneliner"]:
            return 0, "\n".join(self.line(n) for n in sorted(self.nodes)), ""
        if args[:3] == ["scontrol", "show", "hostnames"]:
            return 0, "\n".join(args[3].split(",")), ""
        if args[:3] == ["scontrol", "show", "node"]:
            return (0, self.line(args[3]), "") if args[3] in self.nodes else (1, "", "Node not found")
        if args[0] == "squeue":
            return 0, "\n".join(self.nodes.get(args[3], {}).get("jobs", [])), ""
        fields = dict(a.split("=", 1) for a in args[2:] if "=" in a)
        node = fields.get("nodename")
        if args[1] == "create":
            self.nodes[node] = {
                "states": "IDLE+CLOUD+DYNAMIC_NORM+POWERED_DOWN",
                "cpus": int(fields["CPUs"]),
                "mem": int(fields["RealMemory"]),
                "features": fields["Feature"],
                "jobs": [],
            }
        elif args[1] == "delete":
            self.nodes.pop(node)
        elif args[1] == "update" and fields.get("state") == "power_down_force":
            self.nodes[node]["states"] = "IDLE+CLOUD+DYNAMIC_NORM+POWERED_DOWN"
        elif args[1] == "update" and fields.get("state") == "idle":
            self.nodes[node]["states"] = self.nodes[node]["states"].replace("DOWN+", "IDLE+", 1)
            self.nodes[node].pop("reason", None)
        return 0, "", ""

    def placeholders(self):
        return sorted((n for n in self.nodes if n.startswith("fleet-")), key=lambda n: int(n.split("-")[1]))


@pytest.fixture
def aws(monkeypatch):
    with fleet_group(monkeypatch, 0, 5, 2, hook=True) as (autoscaling, ec2):
        yield {"autoscaling": autoscaling, "ec2": ec2, "ssm": boto3.client("ssm", region_name=REGION)}


def fleet(aws, slurm, **kw):
    return slurm_fleet.Fleet(
        GROUP,
        slurm_fleet.Slurm(slurm.run),
        autoscaling=aws["autoscaling"],
        ec2=aws["ec2"],
        hook_name=HOOK,
        claims=slurm_fleet.fleet_claims(CLAIMS, aws["ssm"]),
        placeholder_prefix="fleet-",
        node_size={"cpu": 2, "mem": 2000},
        **kw,
    )


def group(aws):
    return aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]


def params(aws, kind):
    page = aws["ssm"].get_parameters_by_path(Path=f"{CLAIMS}/{kind}")
    return {p["Name"].rsplit("/", 1)[-1]: p["Value"] for p in page["Parameters"]}


def new_instances(aws, before):
    return sorted({i["InstanceId"] for i in group(aws)["Instances"]} - set(before))


BUSY = "ALLOCATED+DYNAMIC_NORM"


def test_placeholders_fill_the_room_left_in_the_group_and_shrink_with_it(aws, capsys):
    slurm = FakeSlurm([("ip-10-0-0-1", {"states": BUSY}), ("ip-10-0-0-2", {"states": BUSY})])
    result = fleet(aws, slurm).placeholders()
    # MaxSize 5, two instances registered under their host names: three placeholders.
    assert result["created"] == ["fleet-1", "fleet-2", "fleet-3"]
    assert slurm.placeholders() == ["fleet-1", "fleet-2", "fleet-3"]
    assert slurm.nodes["fleet-1"]["features"] == "fleet" and slurm.nodes["fleet-1"]["cpus"] == 2
    assert "placeholders: 3 for 2 node(s) up to 5" in capsys.readouterr().err
    # Run again: nothing to do.
    assert fleet(aws, slurm).placeholders() == {"created": [], "deleted": [], "released": [], "reset": []}
    # fleet-3 is an instance now; the fleet ceiling goes down to 4: room for one more, so the
    # highest asleep placeholder goes and the busy one stays.
    slurm.nodes["fleet-3"]["states"] = "ALLOCATED+CLOUD+DYNAMIC_NORM"
    result = fleet(aws, slurm, max_nodes=4).placeholders()
    assert result["deleted"] == ["fleet-2"]
    assert slurm.placeholders() == ["fleet-1", "fleet-3"]
    # No room at all: every asleep placeholder goes.
    assert fleet(aws, slurm, max_nodes=3).placeholders()["deleted"] == ["fleet-1"]
    assert slurm.placeholders() == ["fleet-3"]


def test_resume_records_the_wanted_placeholder_then_raises_capacity(aws, monkeypatch):
    monkeypatch.setenv("SLURM_FLEET_ASG", GROUP)
    slurm = FakeSlurm([("ip-10-0-0-1", {"states": BUSY})])
    fleet(aws, slurm).placeholders()
    assert (
        slurm_fleet.main(["resume", "fleet-1,fleet-2"], slurm=slurm_fleet.Slurm(slurm.run), fleet=fleet(aws, slurm))
        == 0
    )
    assert set(params(aws, "wanted")) == {"fleet-1", "fleet-2"}
    assert group(aws)["DesiredCapacity"] == 4


def test_two_instances_booting_together_take_different_placeholders(aws, tmp_path):
    slurm = FakeSlurm([])
    f = fleet(aws, slurm)
    before = [i["InstanceId"] for i in group(aws)["Instances"]]
    f.resume(["fleet-1", "fleet-2"])
    first, second = new_instances(aws, before)
    # The second instance's claim of fleet-1 finds it taken (Overwrite=False) and takes fleet-2.
    a = node_claim.run(CLAIMS, tmp_path / "a.env", first, False, 5, ssm=aws["ssm"])
    b = node_claim.run(CLAIMS, tmp_path / "b.env", second, True, 5, ssm=aws["ssm"])
    assert (a, b) == ("fleet-1", "fleet-2")
    assert (tmp_path / "a.env").read_text() == 'SLURM_NODE_CLAIM_ARGS="-N fleet-1"\n'
    assert (tmp_path / "b.env").read_text() == 'SLURM_NODE_CLAIM_ARGS="-N fleet-2 -b"\n'
    assert params(aws, "claims") == {"fleet-1": first, "fleet-2": second}
    assert params(aws, "wanted") == {}
    # A reboot keeps the node; a third instance finds nothing wanted and keeps its host name.
    assert node_claim.run(CLAIMS, tmp_path / "a.env", first, False, 5, ssm=aws["ssm"]) == "fleet-1"
    assert node_claim.run(CLAIMS, tmp_path / "c.env", "i-other", False, 5, ssm=aws["ssm"]) is None
    assert (tmp_path / "c.env").read_text() == 'SLURM_NODE_CLAIM_ARGS=""\n'


def test_a_lost_race_on_every_wanted_node_falls_back_to_the_host_name(aws, tmp_path, capsys):
    aws["ssm"].put_parameter(Name=f"{CLAIMS}/wanted/fleet-1", Value="t", Type="String")
    aws["ssm"].put_parameter(Name=f"{CLAIMS}/claims/fleet-1", Value="i-winner", Type="String")
    assert node_claim.run(CLAIMS, tmp_path / "x.env", "i-loser", False, 5, ssm=aws["ssm"]) is None
    assert "fleet-1 was taken by another instance; trying the next" in capsys.readouterr().err
    assert params(aws, "claims") == {"fleet-1": "i-winner"}


def resumed_and_claimed(aws, tmp_path):
    """fleet-1 resumed (the group grew by one instance) and claimed by that new instance."""
    slurm = FakeSlurm([])
    f = fleet(aws, slurm)
    f.placeholders()
    before = [i["InstanceId"] for i in group(aws)["Instances"]]
    f.resume(["fleet-1"])
    (iid,) = new_instances(aws, before)
    assert node_claim.run(CLAIMS, tmp_path / "claim.env", iid, False, 5, ssm=aws["ssm"]) == "fleet-1"
    return slurm, f, iid


def test_suspend_terminates_the_claiming_instance_and_frees_the_placeholder(aws, tmp_path):
    slurm, f, iid = resumed_and_claimed(aws, tmp_path)
    slurm.nodes["fleet-1"]["states"] = "IDLE+CLOUD+DYNAMIC_NORM"
    assert f.suspend(["fleet-1"]) == [iid]
    assert group(aws)["DesiredCapacity"] == 2
    assert params(aws, "claims") == {}
    # The placeholder stays for the next scale-out (slurmctld powers it down after SuspendProgram).
    assert "fleet-1" in slurm.nodes


def test_suspend_of_a_placeholder_nobody_claimed_only_clears_the_record(aws, capsys):
    slurm = FakeSlurm([])
    f = fleet(aws, slurm)
    f.placeholders()
    aws["ssm"].put_parameter(Name=f"{CLAIMS}/wanted/fleet-2", Value="t", Type="String")
    assert f.suspend(["fleet-2"]) == []
    assert params(aws, "wanted") == {}
    assert group(aws)["DesiredCapacity"] == 2
    assert "suspend fleet-2: no instance claimed this placeholder" in capsys.readouterr().err


def test_claims_of_instances_gone_from_the_group_are_released(aws, capsys):
    slurm = FakeSlurm([])
    f = fleet(aws, slurm)
    f.placeholders()
    aws["ssm"].put_parameter(Name=f"{CLAIMS}/claims/fleet-1", Value="i-gone", Type="String")
    slurm.nodes["fleet-1"]["states"] = "DOWN+CLOUD+DYNAMIC_NORM+NOT_RESPONDING"
    result = f.placeholders()
    assert result["released"] == ["fleet-1"]
    assert params(aws, "claims") == {}
    assert slurm.nodes["fleet-1"]["states"] == "IDLE+CLOUD+DYNAMIC_NORM+POWERED_DOWN"
    assert "its instance i-gone left ASG dask-fleet" in capsys.readouterr().err


TIMED_OUT = {"states": "DOWN+CLOUD+DYNAMIC_NORM+POWERED_DOWN", "reason": "ResumeTimeout reached"}


def test_a_placeholder_whose_claiming_instance_never_registered_is_reset(aws, tmp_path, capsys):
    slurm, f, iid = resumed_and_claimed(aws, tmp_path)
    # Its slurmd never registered: slurmctld gave up after ResumeTimeout.
    slurm.nodes["fleet-1"].update(TIMED_OUT)
    result = f.placeholders()
    assert result["reset"] == ["fleet-1"] and result["created"] == result["deleted"] == []
    # The broken instance is gone with a decrement; the records too; the node is asleep and usable.
    assert iid not in {i["InstanceId"] for i in group(aws)["Instances"] if i["LifecycleState"] == "InService"}
    assert group(aws)["DesiredCapacity"] == 2
    assert params(aws, "claims") == {} and params(aws, "wanted") == {}
    assert slurm.nodes["fleet-1"]["states"] == "IDLE+CLOUD+DYNAMIC_NORM+POWERED_DOWN"
    assert f"its instance {iid} claimed it but never registered: terminated" in capsys.readouterr().err
    # Next pass: nothing left to do.
    assert f.placeholders()["reset"] == []


def test_a_placeholder_no_instance_claimed_in_time_is_reset_and_the_group_left_alone(aws, capsys):
    slurm = FakeSlurm([])
    f = fleet(aws, slurm)
    f.placeholders()
    f.resume(["fleet-2"])
    assert group(aws)["DesiredCapacity"] == 3
    slurm.nodes["fleet-2"].update(TIMED_OUT)
    # An operator's DOWN is not ours to undo.
    slurm.nodes["fleet-3"].update(states="DOWN+CLOUD+DYNAMIC_NORM+POWERED_DOWN", reason="disk check")
    assert f.placeholders()["reset"] == ["fleet-2"]
    assert params(aws, "wanted") == {}
    # The instance launched for it may still boot: it joins under its host name.
    assert group(aws)["DesiredCapacity"] == 3
    assert slurm.nodes["fleet-2"]["states"] == "IDLE+CLOUD+DYNAMIC_NORM+POWERED_DOWN"
    assert slurm.nodes["fleet-3"]["states"].startswith("DOWN+")
    assert "placeholders fleet-2: down after ResumeTimeout; no instance claimed it" in capsys.readouterr().err


def test_lifecycle_lets_an_idle_claimed_placeholder_go_and_powers_it_down(aws, tmp_path):
    slurm = FakeSlurm([])
    f = fleet(aws, slurm)
    f.placeholders()
    before = [i["InstanceId"] for i in group(aws)["Instances"]]
    f.resume(["fleet-1"])
    (iid,) = new_instances(aws, before)
    node_claim.run(CLAIMS, tmp_path / "claim.env", iid, False, 5, ssm=aws["ssm"])
    slurm.nodes["fleet-1"]["states"] = "IDLE+CLOUD+DYNAMIC_NORM"
    backend = autoscaling_backends[DEFAULT_ACCOUNT_ID][REGION]
    for state in backend.autoscaling_groups[GROUP].instance_states:
        if state.instance.id == iid:
            state.lifecycle_state = "Terminating:Wait"
    result = f.lifecycle()
    assert iid in result["completed"]
    assert params(aws, "claims") == {}
    assert ["scontrol", "update", "nodename=fleet-1", "state=power_down_force"] in slurm.calls
    assert "fleet-1" in slurm.nodes


def test_claim_without_an_instance_id_registers_under_the_host_name(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SLURM_NODE_INSTANCE_ID", raising=False)
    monkeypatch.setattr(node_claim, "IMDS", "http://127.0.0.1:9")
    naps = []
    assert node_claim.run(CLAIMS, tmp_path / "n.env", "", False, 3, ssm=object(), sleep=naps.append) is None
    assert naps == [2.0]
    err = capsys.readouterr().err
    assert "no instance id: the instance metadata does not answer" in err
    assert "registering under the host name" in err
    assert (tmp_path / "n.env").read_text() == 'SLURM_NODE_CLAIM_ARGS=""\n'
