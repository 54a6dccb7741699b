"""Per-user QOS limits that follow the fleet (slurm_fleet.py caps): a fraction of the CPUs and
memory of the fleet nodes that are up, never below one job, applied only when it differs; with no
fleet node up, the ASG's desired capacity (moto) times one instance's size stands in."""

from __future__ import annotations

import pytest
from dataplatform_dask.fleet import slurm_fleet
from fleet_aws import GROUP, fleet_group


def node_line(name, state="IDLE+DYNAMIC_NORM", cpus=2, mem=2000, features="fleet"):
    """One line as Slurm 22.05's ``scontrol show node --oneliner`` prints it (OS= holds spaces)."""
    return (
        f"NodeName={name} Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 CPUEfctv={cpus} CPUTot={cpus} CPULoad=0.01 "
        f"AvailableFeatures={features} ActiveFeatures={features} Gres=(null) NodeAddr={name} "
        f"NodeHostName={name} Version=22.05.8 OS=Linux 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian "
        f"RealMemory={mem} AllocMem=0 FreeMem=1500 Sockets={cpus} Boards=1 State={state} ThreadsPerCore=1 "
        f"TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=workers "
        f"Reason=power save: State=IDLE CPUTot=99 [slurm@2026-12-02T16:00:00]"
    )


class FakeSlurm:
    """scontrol's node list and sacctmgr's QOS table; records every sacctmgr change."""

    def __init__(self, nodes, qos):
        self.nodes = list(nodes)
        self.qos = {name: dict(v) for name, v in qos.items()}  # name -> {"pu": "cpu=4", "job": "cpu=2"}
        self.modified = []

    def run(self, args):
        if args[:4] == ["scontrol", "show", "node", "--oneliner"]:
            return 0, "\n".join(self.nodes) + "\n", ""
        if args[:6] == ["sacctmgr", "--noheader", "--parsable2", "show", "qos", "where"]:
            name = args[6].partition("=")[2]
            if name not in self.qos:
                return 0, "", ""
            return 0, f"{name}|{self.qos[name]['pu']}|{self.qos[name]['job']}\n", ""
        if args[:4] == ["sacctmgr", "--immediate", "modify", "qos"]:
            name = args[5].partition("=")[2]
            value = args[7].partition("=")[2]
            self.modified.append((name, value))
            current = slurm_fleet.tres.parse_tres(self.qos[name]["pu"])
            for part in value.split(","):
                key, _sep, number = part.partition("=")
                if number == "-1":
                    current.pop(key, None)
                else:
                    current[key] = number
            self.qos[name]["pu"] = ",".join(f"{k}={v}" for k, v in sorted(current.items()))
            return 0, "", ""
        return 1, "", f"unexpected call {args}"


def caps(slurm, fractions, **kw):
    return slurm_fleet.UserCaps(slurm_fleet.Slurm(slurm.run), fractions, **kw)


QOS = {"engineers": {"pu": "", "job": "cpu=2"}, "analysts": {"pu": "cpu=2", "job": "cpu=2"}}


def test_caps_are_a_fraction_of_the_fleet_nodes_that_are_up():
    slurm = FakeSlurm(
        [
            node_line("slurm-ctl", features="dask_scheduler", cpus=8, mem=16000),  # not the fleet
            node_line("fleet-1"),
            node_line("fleet-2", state="MIXED+DYNAMIC_NORM"),
            node_line("fleet-3", state="ALLOCATED+DYNAMIC_NORM"),
            node_line("fleet-4", state="IDLE+CLOUD+POWERED_DOWN"),  # a placeholder asleep
            node_line("fleet-5", state="DOWN+DYNAMIC_NORM+NOT_RESPONDING"),
            node_line("fleet-6", state="IDLE+DRAIN+DYNAMIC_NORM+POWERING_UP"),
        ],
        QOS,
    )
    changed = caps(slurm, {"engineers": 1.0, "analysts": 0.5}).apply()
    # Three nodes up: 6 CPUs, 6000 MB.
    assert slurm.qos["engineers"]["pu"] == "cpu=6,mem=6000"
    assert slurm.qos["analysts"]["pu"] == "cpu=3,mem=3000"
    assert set(changed) == {"engineers", "analysts"}


def test_caps_shrink_and_grow_with_the_fleet_and_never_go_below_one_job(capsys):
    up = [node_line(f"fleet-{i}", cpus=2, mem=4000) for i in range(8)]
    slurm = FakeSlurm(up, {"engineers": {"pu": "", "job": "cpu=4,mem=8G"}})
    user_caps = caps(slurm, {"engineers": 0.25})
    user_caps.apply()
    assert slurm.qos["engineers"]["pu"] == "cpu=4,mem=8192"  # 25 % of 16 CPUs; 8000 MB < one job's 8 GB
    slurm.nodes = up + [node_line(f"fleet-{i}", cpus=2, mem=4000) for i in range(8, 20)]
    user_caps.apply()
    assert slurm.qos["engineers"]["pu"] == "cpu=10,mem=20000"  # 25 % of 20 c5.large-like nodes
    slurm.nodes = up[:1]
    user_caps.apply()
    assert slurm.qos["engineers"]["pu"] == "cpu=4,mem=8192"  # one node: one job's size, not 0
    err = capsys.readouterr().err
    assert "caps: qos engineers MaxTRESPerUser cpu=10,mem=20000 -> cpu=4,mem=8192 (0.25 of 1 fleet node(s)" in err


def test_without_a_per_job_limit_the_floor_is_the_largest_node():
    nodes = [node_line("a", cpus=2, mem=2000), node_line("b", cpus=4, mem=3000)]
    slurm = FakeSlurm(nodes, {"q": {"pu": "", "job": ""}})
    caps(slurm, {"q": 0.1}).apply()
    assert slurm.qos["q"]["pu"] == "cpu=4,mem=3000"


def test_unchanged_caps_call_no_sacctmgr_change_and_keep_other_limits():
    slurm = FakeSlurm([node_line("a"), node_line("b")], {"q": {"pu": "cpu=2,mem=2000,node=1", "job": "cpu=2"}})
    assert caps(slurm, {"q": 0.5}).apply() == {}
    assert slurm.modified == []
    slurm.nodes.append(node_line("c"))
    slurm.nodes.append(node_line("d"))
    caps(slurm, {"q": 0.5}).apply()
    # Only cpu and mem follow the fleet; the node limit set by hand stays.
    assert slurm.modified == [("q", "cpu=4,mem=4000,node=1")]
    assert slurm.qos["q"]["pu"] == "cpu=4,mem=4000,node=1"


def test_a_missing_qos_is_skipped_with_a_message(capsys):
    slurm = FakeSlurm([node_line("a")], {})
    assert caps(slurm, {"ghost": 0.5}).apply() == {}
    assert "caps: qos ghost does not exist (slurm_controller_qos); skipped" in capsys.readouterr().err


def test_no_fleet_and_no_group_leaves_the_limits_alone(capsys):
    slurm = FakeSlurm([node_line("a", state="IDLE+CLOUD+POWERED_DOWN")], {"q": {"pu": "cpu=6", "job": ""}})
    assert caps(slurm, {"q": 0.5}, node_size={"cpu": 2, "mem": 3584}).apply() == {}
    assert slurm.modified == []
    assert "per-user limits left as they are" in capsys.readouterr().err


@pytest.fixture
def moto_group(monkeypatch):
    with fleet_group(monkeypatch, 0, 20, 6) as (autoscaling, _ec2):
        yield autoscaling


def test_main_caps_falls_back_to_the_groups_size_when_no_fleet_node_is_up(moto_group, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_FLEET_ASG", GROUP)
    monkeypatch.setenv("SLURM_FLEET_USER_CAPS", "engineers:0.25 analysts:0.25")
    monkeypatch.setenv("SLURM_FLEET_NODE_CPUS", "2")
    monkeypatch.setenv("SLURM_FLEET_NODE_MEMORY_MB", "3584")
    slurm = FakeSlurm([node_line("slurm-ctl", features="dask_scheduler")], QOS)
    assert slurm_fleet.main(["caps"], slurm=slurm_fleet.Slurm(slurm.run)) == 0
    # 6 instances x (2 CPUs, 3584 MB): 25 % = 3 CPUs, 5376 MB.
    assert slurm.qos["engineers"]["pu"] == "cpu=3,mem=5376"
    assert "from asg: 12 CPUs, 21504 MB" in capsys.readouterr().err
    # Run again: nothing to change.
    slurm.modified.clear()
    assert slurm_fleet.main(["caps"], slurm=slurm_fleet.Slurm(slurm.run)) == 0
    assert slurm.modified == []


def test_main_caps_needs_no_group_when_nodes_are_up(monkeypatch):
    monkeypatch.delenv("SLURM_FLEET_ASG", raising=False)
    monkeypatch.setenv("SLURM_FLEET_USER_CAPS", "engineers:1")
    slurm = FakeSlurm([node_line("a"), node_line("b")], QOS)
    assert slurm_fleet.main(["caps"], slurm=slurm_fleet.Slurm(slurm.run)) == 0
    assert slurm.qos["engineers"]["pu"] == "cpu=4,mem=4000"


def test_main_caps_with_no_fraction_set_does_nothing(monkeypatch):
    monkeypatch.delenv("SLURM_FLEET_USER_CAPS", raising=False)
    slurm = FakeSlurm([], {})
    assert slurm_fleet.main(["caps"], slurm=slurm_fleet.Slurm(slurm.run)) == 0
    assert slurm.modified == []


@pytest.mark.parametrize("text", ["engineers", "engineers:0", "engineers:1.5", ":0.25", "engineers:quarter"])
def test_bad_fraction_setting_is_named(text, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_FLEET_USER_CAPS", text)
    slurm = FakeSlurm([node_line("a")], QOS)
    assert slurm_fleet.main(["caps"], slurm=slurm_fleet.Slurm(slurm.run)) == 1
    assert "SLURM_FLEET_USER_CAPS:" in capsys.readouterr().err
    assert slurm.modified == []


def test_parse_node_reads_the_first_of_each_key_only():
    node = slurm_fleet.parse_node(node_line("x", state="IDLE+CLOUD+POWERED_DOWN", cpus=2, mem=2000))
    assert node == {
        "name": "x",
        "cpus": 2,
        "memory_mb": 2000,
        "features": ["fleet"],
        "states": ["IDLE", "CLOUD", "POWERED_DOWN"],
        "reason": "power save: State=IDLE CPUTot=99",
    }
    assert slurm_fleet.parse_node("No nodes in the system") is None
    assert slurm_fleet.parse_node("NodeName=y State=IDLE")["reason"] == ""
