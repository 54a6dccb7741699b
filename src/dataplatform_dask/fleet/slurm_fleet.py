"""Slurm power saving and the termination lifecycle hook, driving the worker Auto Scaling Group.

Installed on the Slurm controller beside the collection's plugins/module_utils/asg.py (its
pure helpers: size checks, instance views) and run by the Dask environment's Python (boto3):

  slurm_fleet.py resume HOSTLIST    slurmctld's ResumeProgram: raise the group's desired
                                    capacity by the nodes asked for, never above the cap
  slurm_fleet.py suspend HOSTLIST   slurmctld's SuspendProgram: drain each idle node, then
                                    terminate that very instance with a decrement
  slurm_fleet.py lifecycle          every 30 s (timer): drain nodes the group is terminating
                                    and let them go once idle; protect busy nodes from scale-in
  slurm_fleet.py placeholders       every 30 s (timer): keep powered-down placeholder nodes
                                    (State=CLOUD) for the room left in the group, so Slurm
                                    calls ResumeProgram even when every node is busy; one
                                    that no instance joined within ResumeTimeout is reset
  slurm_fleet.py caps               every 30 s (timer) and after resume/suspend: set each QOS's
                                    MaxTRESPerUser (cpu, mem) to its fraction of the fleet

Settings come from the environment (/etc/slurm/fleet.env): SLURM_FLEET_ASG,
SLURM_FLEET_MAX_NODES (20), SLURM_FLEET_LIFECYCLE_HOOK, AWS_DEFAULT_REGION,
SLURM_FLEET_FEATURE (fleet), SLURM_FLEET_USER_CAPS ("qos:fraction ..."),
SLURM_FLEET_NODE_CPUS / SLURM_FLEET_NODE_MEMORY_MB (one fleet instance's size),
SLURM_FLEET_PLACEHOLDER_PREFIX (fleet-) and SLURM_FLEET_CLAIMS (an SSM Parameter Store path).
Nodes are the instances' host names (slurmd -Z registers under the host name; on EC2 the first
label of PrivateDnsName), or a placeholder's name that an instance claimed at boot: ResumeProgram
records {claims}/wanted/<node>, the booting instance creates {claims}/claims/<node> = its
instance id with Overwrite=False (so two instances never take one node) and starts
slurmd -N <node> (roles/slurm_node/files/slurm_node_claim.py). Every decision is logged to
stderr (the fleet timer's journal) and, with SLURM_FLEET_LOG, to that file as well: slurmctld
keeps only a ResumeProgram's or SuspendProgram's exit status.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import boto3
import botocore
from botocore.config import Config

# The collection's plugins/module_utils/asg.py and slurm.py, shipped in this package's wheel.
from dataplatform_dask.fleet.claims import Claims
from dataplatform_dask.module_utils import asg
from dataplatform_dask.module_utils import slurm as tres

HARD_CAP = 20  # the platform's fleet ceiling, whatever the group's MaxSize says
BUSY_STATES = ("ALLOCATED", "MIXED", "COMPLETING")
# A node in any of these states offers the fleet nothing now (gone, asleep, or not yet back).
ABSENT_STATES = {"DOWN", "POWERED_DOWN", "POWERING_DOWN", "POWER_DOWN", "POWERING_UP", "FUTURE"}


# slurmctld's reason on a node it powered up that did not register within ResumeTimeout.
RESUME_TIMEOUT_REASON = "ResumeTimeout reached"
# Reason= holds spaces, even key-like words; slurmctld ends it with " [user@time]".
REASON = re.compile(r" Reason=(.*?)(?: \[[^\]@ ]*@[^\] ]*\]|$)")


class FleetError(Exception):
    """An AWS or Slurm call failed; the message names the action and the group or node."""


def fleet_claims(path, ssm):
    """The placeholder claims under ``path`` (fleet.claims), failing with FleetError."""
    return Claims(path, ssm, error=lambda action, e: FleetError(f"{action}: {e}"))


def log(message):
    print(f"slurm_fleet: {message}", file=sys.stderr, flush=True)
    # slurmctld keeps no output of its power-saving programs: a log file of our own as well.
    path = os.environ.get("SLURM_FLEET_LOG", "")
    if path:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} slurm_fleet: {message}\n")
        except OSError:
            pass


class Slurm:
    """The few Slurm commands the hooks need (scontrol/squeue as SlurmUser)."""

    def __init__(self, run=None):
        self._run = run or self._subprocess

    @staticmethod
    def _subprocess(args):
        done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)  # noqa: S603 (fixed argv)
        return done.returncode, done.stdout, done.stderr

    def call(self, action, args):
        rc, out, err = self._run(args)
        if rc != 0:
            raise FleetError(f"{action}: {' '.join(args[:2])} failed: {(err or out).strip()}")
        return out

    def hostnames(self, hostlist):
        return self.call(f"expand {hostlist}", ["scontrol", "show", "hostnames", hostlist]).split()

    def jobs_on(self, node):
        return self.call(f"list jobs on {node}", ["squeue", "-h", "-w", node, "-o", "%i"]).split()

    def drain(self, node, reason):
        self.call(f"drain {node}", ["scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}"])

    def resume(self, node):
        self.call(f"undrain {node}", ["scontrol", "update", f"nodename={node}", "state=resume"])

    def delete(self, node):
        self.call(f"delete node {node}", ["scontrol", "delete", f"nodename={node}"])

    def known(self, node):
        rc, _out, _err = self._run(["scontrol", "show", "node", node])
        return rc == 0

    def create_cloud(self, node, cpus, memory_mb, feature):
        size = [f"CPUs={cpus}", f"RealMemory={memory_mb}", f"Feature={feature}"]
        self.call(f"create placeholder {node}", ["scontrol", "create", f"nodename={node}", "state=CLOUD", *size])

    def set_idle(self, node):
        self.call(f"return {node} to service", ["scontrol", "update", f"nodename={node}", "state=idle"])

    def power_down(self, node):
        self.call(f"power down {node}", ["scontrol", "update", f"nodename={node}", "state=power_down_force"])

    def nodes(self):
        """Every node Slurm knows: [{"name", "cpus", "memory_mb", "features", "states"}]."""
        out = self.call("list nodes", ["scontrol", "show", "node", "--oneliner"])
        return [node for node in (parse_node(line) for line in out.splitlines()) if node]

    def qos_limits(self, name):
        """(MaxTRESPerUser, MaxTRESPerJob) of a QOS as TRES dicts, or None when it does not exist."""
        args = ["sacctmgr", "--noheader", "--parsable2", "show", "qos", "where", f"name={name}"]
        out = self.call(f"read qos {name}", [*args, "format=name,maxtrespu,maxtres"])
        for line in out.splitlines():
            fields = [*line.split("|"), "", ""][:3]
            if fields[0] == name:
                return tres.parse_tres(fields[1]), tres.parse_tres(fields[2])
        return None

    def set_user_limit(self, name, value):
        self.call(
            f"set MaxTRESPerUser={value} on qos {name}",
            ["sacctmgr", "--immediate", "modify", "qos", "where", f"name={name}", "set", f"MaxTRESPerUser={value}"],
        )


def parse_node(line):
    """One line of ``scontrol show node --oneliner`` as a dict, None for anything else.

    Only the first occurrence of each key counts: a Reason= text may repeat key-like words.
    """
    fields = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    if "NodeName" not in fields:
        return None
    features = fields.get("AvailableFeatures", "")
    reason = REASON.search(line)
    return {
        "name": fields["NodeName"],
        "cpus": int(fields.get("CPUTot", "0") or 0),
        "memory_mb": int(fields.get("RealMemory", "0") or 0),
        "features": [] if features in ("", "(null)") else features.split(","),
        "states": [part.rstrip("*~#%!") for part in fields.get("State", "").split("+") if part],
        "reason": reason.group(1).strip() if reason else "",
    }


def parse_user_caps(text):
    """'engineers:0.25 analysts:0.5' -> {'engineers': 0.25, 'analysts': 0.5}; raises FleetError on nonsense."""
    caps = {}
    for item in (text or "").replace(",", " ").split():
        name, sep, value = item.partition(":")
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if not sep or not name or not 0 < fraction <= 1:
            raise FleetError(f"SLURM_FLEET_USER_CAPS: '{item}' is not QOS:FRACTION with 0 < FRACTION <= 1")
        caps[name] = fraction
    return caps


class UserCaps:
    """Per-user QOS limits (MaxTRESPerUser cpu and mem) that follow the fleet's size.

    The fleet is the nodes with the fleet feature that are there now (not down, asleep or still
    booting): the sum of their CPUs and RealMemory. With none there, the group's desired capacity
    times one instance's size (``node_size``) stands in, when the group can be read. Each QOS gets
    ``fraction`` of that, never less than one job's size (its MaxTRESPerJob, else the largest
    node), and sacctmgr is called only when the value differs.
    """

    def __init__(self, slurm, fractions, *, feature="fleet", node_size=None, group_size=None):
        self.slurm = slurm
        self.fractions = dict(fractions)
        self.feature = feature
        self.node_size = dict(node_size or {})  # {"cpu": 2, "mem": 3584}
        self.group_size = group_size  # callable returning the ASG's desired capacity, or None

    def fleet(self):
        """{"nodes", "cpu", "mem", "largest": {"cpu", "mem"}, "source"} or None when nothing is known."""
        present = [
            n
            for n in self.slurm.nodes()
            if self.feature in n["features"] and not ABSENT_STATES.intersection(n["states"])
        ]
        if present:
            return {
                "nodes": len(present),
                "cpu": sum(n["cpus"] for n in present),
                "mem": sum(n["memory_mb"] for n in present),
                "largest": {"cpu": max(n["cpus"] for n in present), "mem": max(n["memory_mb"] for n in present)},
                "source": "slurm",
            }
        if self.group_size is None or not self.node_size.get("cpu"):
            return None
        try:
            count = int(self.group_size())
        except FleetError as e:
            log(f"caps: no fleet node is up and the group cannot be read ({e})")
            return None
        return {
            "nodes": count,
            "cpu": count * int(self.node_size.get("cpu", 0)),
            "mem": count * int(self.node_size.get("mem", 0)),
            "largest": {k: int(v) for k, v in self.node_size.items()},
            "source": "asg",
        }

    @staticmethod
    def limit(fraction, fleet, per_job):
        """{"cpu": N, "mem": MB}: ``fraction`` of the fleet, at least one job (or one node)."""
        result = {}
        for key in ("cpu", "mem"):
            floor = int(per_job.get(key) or fleet["largest"].get(key) or 0)
            share = int(fraction * fleet[key])
            if max(floor, share) > 0:
                result[key] = str(max(floor, share))
        return result

    def apply(self):
        """Set every QOS's per-user limit; returns {qos: (before, after)} for the ones changed."""
        fleet = self.fleet()
        if fleet is None:
            log("caps: no fleet node is up and no group size to go by; per-user limits left as they are")
            return {}
        changed = {}
        for name, fraction in sorted(self.fractions.items()):
            limits = self.slurm.qos_limits(name)
            if limits is None:
                log(f"caps: qos {name} does not exist (slurm_controller_qos); skipped")
                continue
            per_user, per_job = limits
            want = dict(per_user, **self.limit(fraction, fleet, per_job))
            if want == per_user:
                continue
            value = tres.format_tres(want, per_user)
            self.slurm.set_user_limit(name, value)
            before = ",".join(f"{k}={v}" for k, v in sorted(per_user.items())) or "none"
            log(
                f"caps: qos {name} MaxTRESPerUser {before} -> {value} ({fraction:g} of {fleet['nodes']} fleet "
                f"node(s) from {fleet['source']}: {fleet['cpu']} CPUs, {fleet['mem']} MB)"
            )
            changed[name] = (per_user, want)
        return changed


class Fleet:
    def __init__(
        self,
        group_name,
        slurm,
        *,
        autoscaling=None,
        ec2=None,
        max_nodes=HARD_CAP,
        hook_name="",
        claims=None,
        placeholder_prefix="",
        node_size=None,
        feature="fleet",
    ):
        config = Config(retries={"mode": "standard", "max_attempts": 10})
        self.name = group_name
        self.slurm = slurm
        self.autoscaling = autoscaling or boto3.client("autoscaling", config=config)
        self.ec2 = ec2 or boto3.client("ec2", config=config)
        self.max_nodes = min(int(max_nodes), HARD_CAP)
        self.hook_name = hook_name
        self.claims = claims
        self.prefix = placeholder_prefix if claims is not None else ""
        self.node_size = dict(node_size or {"cpu": 2, "mem": 3584})
        self.feature = feature

    def is_placeholder(self, node):
        return bool(self.prefix) and node.startswith(self.prefix) and node[len(self.prefix) :].isdigit()

    def call(self, client, action, method, **params):
        try:
            return getattr(client, method)(**params)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise FleetError(f"{action} on ASG {self.name}: {e}") from None

    def group(self):
        groups = self.call(
            self.autoscaling, "describe group", "describe_auto_scaling_groups", AutoScalingGroupNames=[self.name]
        )["AutoScalingGroups"]
        if not groups:
            raise FleetError(f"ASG {self.name} not found: check SLURM_FLEET_ASG and the region")
        return groups[0]

    def nodes_to_instances(self, group):
        """{node name: instance view} for the group's members (node = host name of PrivateDnsName)."""
        members = {i["instance_id"]: i for i in asg.instances_view(group)}
        if not members:
            return {}
        reservations = self.call(self.ec2, "describe instances", "describe_instances", InstanceIds=sorted(members))[
            "Reservations"
        ]
        result = {}
        for reservation in reservations:
            for instance in reservation["Instances"]:
                host = (instance.get("PrivateDnsName") or "").split(".")[0]
                if host:
                    result[host] = members[instance["InstanceId"]]
        if self.prefix:  # a claimed placeholder is its instance's node, not the host name
            for node, iid in self.claims.claims().items():
                if iid in members:
                    result = {n: i for n, i in result.items() if i["instance_id"] != iid}
                    result[node] = members[iid]
        return result

    # --- ResumeProgram ------------------------------------------------------------------

    def resume(self, nodes):
        """Raise desired capacity by len(nodes), capped at the fleet ceiling. Returns the new desired."""
        group = self.group()
        sizes = asg.capacity_view(group)
        # Before the capacity rises: the instance that boots for a placeholder must find it wanted.
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for node in nodes:
            if self.is_placeholder(node):
                self.claims.want(node, when)
        ceiling = min(self.max_nodes, sizes["max_size"])
        wanted = sizes["desired_capacity"] + len(nodes)
        target = min(wanted, ceiling)
        if target < wanted:
            log(f"resume {','.join(nodes)}: capped at {ceiling} nodes (asked for {wanted})")
        error = asg.check_bounds(sizes["min_size"], sizes["max_size"], target)
        if error:
            raise FleetError(f"set desired capacity on ASG {self.name}: {error}")
        if target <= sizes["desired_capacity"]:
            log(f"resume {','.join(nodes)}: desired capacity stays {sizes['desired_capacity']}")
            return sizes["desired_capacity"]
        self.call(
            self.autoscaling,
            f"set desired capacity {target}",
            "set_desired_capacity",
            AutoScalingGroupName=self.name,
            DesiredCapacity=target,
            HonorCooldown=False,
        )
        log(f"resume {','.join(nodes)}: desired capacity {sizes['desired_capacity']} -> {target}")
        return target

    # --- SuspendProgram -----------------------------------------------------------------

    def suspend(self, nodes):
        """Drain each idle node and terminate its instance with a decrement. Returns the ids terminated.

        One node's failure (an AWS or Slurm error) is logged and the others still go; the call then
        raises FleetError naming every node that failed.
        """
        group = self.group()
        sizes = asg.capacity_view(group)
        by_node = self.nodes_to_instances(group)
        state = {"desired": sizes["desired_capacity"], "terminated": []}
        failed = []
        for node in nodes:
            try:
                self._suspend_one(node, by_node.get(node), sizes, state)
            except FleetError as e:
                log(f"suspend {node}: {e}")
                failed.append(node)
        if failed:
            raise FleetError(f"suspend on ASG {self.name}: failed for {', '.join(failed)}")
        return state["terminated"]

    def _suspend_one(self, node, instance, sizes, state):
        if self.slurm.jobs_on(node):
            log(f"suspend {node}: busy, kept (its scale-in protection stays)")
            return
        if instance is None:
            if self.is_placeholder(node):
                log(f"suspend {node}: no instance claimed this placeholder; it stays powered down")
                self.claims.release(node)
                return
            log(f"suspend {node}: no instance of ASG {self.name} has this host name; forgetting the node")
            self._forget(node)
            return
        error = asg.check_bounds(sizes["min_size"], sizes["max_size"], state["desired"] - 1)
        if error:
            log(f"suspend {node}: kept, the group is at its minimum ({error})")
            return
        self.slurm.drain(node, "power save: instance terminating")
        if self.slurm.jobs_on(node):  # a job slipped in before the drain: let it run
            self.slurm.resume(node)
            log(f"suspend {node}: a job started meanwhile, kept")
            return
        self.call(
            self.autoscaling,
            f"terminate {instance['instance_id']} ({node})",
            "terminate_instance_in_auto_scaling_group",
            InstanceId=instance["instance_id"],
            ShouldDecrementDesiredCapacity=True,
        )
        state["desired"] -= 1
        state["terminated"].append(instance["instance_id"])
        log(f"suspend {node}: terminated {instance['instance_id']}, desired capacity now {state['desired']}")
        self._forget(node)

    def _forget(self, node, power_down=False):
        """Remove a dynamic node whose instance is gone, so the next instance registers afresh.

        A placeholder stays, powered down again (by slurmctld after SuspendProgram, or here when
        ``power_down``), and its claim goes, so the next instance may take it.
        """
        if self.is_placeholder(node):
            self.claims.release(node)
            if power_down:
                try:
                    self.slurm.power_down(node)
                except FleetError as e:
                    log(str(e))
            return
        if self.slurm.known(node):
            try:
                self.slurm.delete(node)
            except FleetError as e:
                log(f"{e} (slurmctld keeps it until ReturnToService)")

    # --- termination lifecycle hook and scale-in protection -----------------------------

    def lifecycle(self):
        """Drain nodes whose instances wait on the termination hook; let them go once idle.

        Also keeps scale-in protection on exactly the busy nodes, so a lowered desired
        capacity (by hand or by another policy) only ever takes idle instances.
        Returns {"completed": [...], "waiting": [...], "protected": [...], "unprotected": [...]}.
        """
        group = self.group()
        by_node = self.nodes_to_instances(group)
        result = {"completed": [], "waiting": [], "protected": [], "unprotected": []}
        for node, instance in sorted(by_node.items()):
            busy = bool(self.slurm.jobs_on(node)) if self.slurm.known(node) else False
            iid = instance["instance_id"]
            if instance["lifecycle_state"] == "Terminating:Wait" and self.hook_name:
                if self.slurm.known(node):
                    self.slurm.drain(node, "ASG termination")
                if busy:
                    self.call(
                        self.autoscaling,
                        f"record heartbeat for {iid} ({node})",
                        "record_lifecycle_action_heartbeat",
                        AutoScalingGroupName=self.name,
                        LifecycleHookName=self.hook_name,
                        InstanceId=iid,
                    )
                    result["waiting"].append(iid)
                    log(f"lifecycle {node}: drained, waiting for its jobs to end")
                    continue
                self.call(
                    self.autoscaling,
                    f"complete lifecycle action for {iid} ({node})",
                    "complete_lifecycle_action",
                    AutoScalingGroupName=self.name,
                    LifecycleHookName=self.hook_name,
                    InstanceId=iid,
                    LifecycleActionResult="CONTINUE",
                )
                result["completed"].append(iid)
                log(f"lifecycle {node}: idle, lifecycle action completed")
                self._forget(node, power_down=True)
            elif instance["lifecycle_state"] == "InService" and busy != instance["protected_from_scale_in"]:
                self.call(
                    self.autoscaling,
                    f"set scale-in protection {busy} on {iid} ({node})",
                    "set_instance_protection",
                    AutoScalingGroupName=self.name,
                    InstanceIds=[iid],
                    ProtectedFromScaleIn=busy,
                )
                result["protected" if busy else "unprotected"].append(iid)
        return result

    # --- placeholders: room to grow when every node is busy ---------------------------

    def _reset_failed(self, node, instance_id):
        """A placeholder no instance joined as within ResumeTimeout: make it usable again.

        slurmctld leaves it DOWN+POWERED_DOWN ("ResumeTimeout reached") and never offers it
        again, so one failed boot would shrink the room to grow for good. An instance that
        claimed it and never registered is broken: it is terminated with a decrement. Then the
        records go and the node returns to idle, powered down, for the next resume.
        """
        if instance_id:
            self.call(
                self.autoscaling,
                f"terminate {instance_id} ({node})",
                "terminate_instance_in_auto_scaling_group",
                InstanceId=instance_id,
                ShouldDecrementDesiredCapacity=True,
            )
            what = f"its instance {instance_id} claimed it but never registered: terminated"
        else:
            what = "no instance claimed it (the group may still be launching one: it joins under its host name)"
        self.claims.release(node)
        self.slurm.set_idle(node)
        log(f"placeholders {node}: down after ResumeTimeout; {what}; records cleared, back to idle (powered down)")

    def placeholders(self):
        """Keep one powered-down placeholder per instance the group may still add.

        slurmd -Z nodes are removed when their instances go, so a fully busy fleet offers Slurm
        nothing to resume. Placeholders (``scontrol create ... State=CLOUD``, the fleet's feature
        and one instance's size) fill the room up to min(fleet max, group MaxSize); Slurm
        allocates a waiting job to one, calls ResumeProgram with its name, and the instance that
        boots claims it. Claims whose instance left the group are released and their node powered
        down. A placeholder Slurm set DOWN because no instance joined as it within ResumeTimeout
        is reset (``_reset_failed``). Returns {"created": [...], "deleted": [...], "released":
        [...], "reset": [...]}.
        """
        result = {"created": [], "deleted": [], "released": [], "reset": []}
        if not self.prefix:
            return result
        group = self.group()
        sizes = asg.capacity_view(group)
        members = {i["instance_id"] for i in asg.instances_view(group) if not i["lifecycle_state"].startswith("Termin")}
        claims = self.claims.claims()
        for node, iid in sorted(claims.items()):
            if iid not in members:
                log(f"placeholders {node}: its instance {iid} left ASG {self.name}; claim released, node powered down")
                self.claims.release(node)
                try:
                    self.slurm.power_down(node)
                except FleetError as e:
                    log(str(e))
                result["released"].append(node)
                claims.pop(node)
        fleet = [n for n in self.slurm.nodes() if self.feature in n["features"]]
        held = {n["name"]: n for n in fleet if self.is_placeholder(n["name"])}
        for node, info in sorted(held.items()):
            if "DOWN" in info["states"] and info["reason"].startswith(RESUME_TIMEOUT_REASON):
                self._reset_failed(node, claims.pop(node, None))  # claims left: members'
                info["states"] = ["IDLE", "CLOUD", "POWERED_DOWN"]
                result["reset"].append(node)
        others = len(fleet) - len(held)
        want = max(0, min(self.max_nodes, sizes["max_size"]) - others)
        index = 1
        while len(held) + len(result["created"]) < want:
            node = f"{self.prefix}{index}"
            if node not in held:
                self.slurm.create_cloud(node, self.node_size["cpu"], self.node_size["mem"], self.feature)
                result["created"].append(node)
            index += 1
        excess = len(held) - want
        for node in sorted(held, key=lambda n: int(n[len(self.prefix) :]), reverse=True):
            if excess <= 0:
                break
            states = set(held[node]["states"])
            asleep = "POWERED_DOWN" in states and not states & {"ALLOCATED", "MIXED", "COMPLETING", "POWERING_UP"}
            if asleep and node not in claims:
                self.slurm.delete(node)
                result["deleted"].append(node)
                excess -= 1
        if result["created"] or result["deleted"]:
            log(
                f"placeholders: {len(held) + len(result['created']) - len(result['deleted'])} for "
                f"{others} node(s) up to {min(self.max_nodes, sizes['max_size'])} "
                f"(created {','.join(result['created']) or 'none'}; deleted {','.join(result['deleted']) or 'none'})"
            )
        return result


def make_fleet(group_name, slurm):
    """The Fleet the environment (/etc/slurm/fleet.env) describes."""
    claims_path = os.environ.get("SLURM_FLEET_CLAIMS", "")
    prefix = os.environ.get("SLURM_FLEET_PLACEHOLDER_PREFIX", "")
    claims = None
    if claims_path and prefix:
        config = Config(retries={"mode": "standard", "max_attempts": 10})
        claims = fleet_claims(claims_path, boto3.client("ssm", config=config))
    return Fleet(
        group_name,
        slurm,
        max_nodes=int(os.environ.get("SLURM_FLEET_MAX_NODES", HARD_CAP)),
        hook_name=os.environ.get("SLURM_FLEET_LIFECYCLE_HOOK", ""),
        claims=claims,
        placeholder_prefix=prefix,
        node_size={
            "cpu": int(os.environ.get("SLURM_FLEET_NODE_CPUS", "2") or 2),
            "mem": int(os.environ.get("SLURM_FLEET_NODE_MEMORY_MB", "3584") or 3584),
        },
        feature=os.environ.get("SLURM_FLEET_FEATURE", "fleet"),
    )


def user_caps(slurm, fleet_factory):
    """The UserCaps the environment describes, or None when no QOS follows the fleet."""
    fractions = parse_user_caps(os.environ.get("SLURM_FLEET_USER_CAPS", ""))
    if not fractions:
        return None
    node_size = {
        "cpu": int(os.environ.get("SLURM_FLEET_NODE_CPUS", "0") or 0),
        "mem": int(os.environ.get("SLURM_FLEET_NODE_MEMORY_MB", "0") or 0),
    }

    def group_size():
        try:
            fleet = fleet_factory()
        except botocore.exceptions.BotoCoreError as e:  # no region, no credentials
            raise FleetError(f"read ASG {os.environ.get('SLURM_FLEET_ASG', '')}: {e}") from None
        if fleet is None:
            raise FleetError("SLURM_FLEET_ASG is not set")
        return asg.capacity_view(fleet.group())["desired_capacity"]

    return UserCaps(
        slurm,
        fractions,
        feature=os.environ.get("SLURM_FLEET_FEATURE", "fleet"),
        node_size=node_size,
        group_size=group_size,
    )


def main(argv=None, slurm=None, fleet=None):
    argv = sys.argv[1:] if argv is None else argv
    commands = ("resume", "suspend", "lifecycle", "placeholders", "caps")
    if not argv or argv[0] not in commands or (argv[0] in ("resume", "suspend") and len(argv) < 2):
        print("usage: slurm_fleet.py resume|suspend HOSTLIST | lifecycle | placeholders | caps", file=sys.stderr)
        return 2
    group_name = os.environ.get("SLURM_FLEET_ASG", "")
    if not group_name and argv[0] != "caps":
        print("slurm_fleet: SLURM_FLEET_ASG is not set (slurm_controller_fleet_asg_name)", file=sys.stderr)
        return 2
    slurm = slurm or Slurm()
    made = {}

    def fleet_factory():
        if "fleet" not in made:
            made["fleet"] = fleet or (make_fleet(group_name, slurm) if group_name else None)
        return made["fleet"]

    rc = 0
    try:
        if argv[0] == "lifecycle":
            fleet_factory().lifecycle()
        elif argv[0] == "placeholders":
            fleet_factory().placeholders()
        elif argv[0] in ("resume", "suspend"):
            nodes = slurm.hostnames(argv[1])
            getattr(fleet_factory(), argv[0])(nodes)
    except FleetError as e:
        log(str(e))
        rc = 1
    # The fleet's size may have changed: the per-user limits follow (after a failure too, since
    # part of a suspend may have gone through). The timer runs `caps` on its own as well.
    if argv[0] in ("resume", "suspend", "caps"):
        try:
            caps = user_caps(slurm, fleet_factory)
            if caps is not None:
                caps.apply()
        except FleetError as e:
            log(str(e))
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
