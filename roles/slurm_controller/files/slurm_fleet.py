"""Slurm power saving and the termination lifecycle hook, driving the worker Auto Scaling Group.

Installed on the Slurm controller beside the collection's plugins/module_utils/asg.py (its
pure helpers: size checks, instance views) and run by the Dask environment's Python (boto3):

  slurm_fleet.py resume HOSTLIST    slurmctld's ResumeProgram: raise the group's desired
                                    capacity by the nodes asked for, never above the cap
  slurm_fleet.py suspend HOSTLIST   slurmctld's SuspendProgram: drain each idle node, then
                                    terminate that very instance with a decrement
  slurm_fleet.py lifecycle          every 30 s (timer): drain nodes the group is terminating
                                    and let them go once idle; protect busy nodes from scale-in

Settings come from the environment (/etc/slurm/fleet.env): SLURM_FLEET_ASG,
SLURM_FLEET_MAX_NODES (20), SLURM_FLEET_LIFECYCLE_HOOK, AWS_DEFAULT_REGION. Nodes are the
instances' host names (slurmd -Z registers under the host name; on EC2 the first label of
PrivateDnsName). Every decision is logged to stderr, which slurmctld keeps in its log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The collection's plugins/module_utils/asg.py, installed beside this file.
import asg
import boto3
import botocore
from botocore.config import Config

HARD_CAP = 20  # the platform's fleet ceiling, whatever the group's MaxSize says
BUSY_STATES = ("ALLOCATED", "MIXED", "COMPLETING")


class FleetError(Exception):
    """An AWS or Slurm call failed; the message names the action and the group or node."""


def log(message):
    print(f"slurm_fleet: {message}", file=sys.stderr, flush=True)


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


class Fleet:
    def __init__(self, group_name, slurm, *, autoscaling=None, ec2=None, max_nodes=HARD_CAP, hook_name=""):
        config = Config(retries={"mode": "standard", "max_attempts": 10})
        self.name = group_name
        self.slurm = slurm
        self.autoscaling = autoscaling or boto3.client("autoscaling", config=config)
        self.ec2 = ec2 or boto3.client("ec2", config=config)
        self.max_nodes = min(int(max_nodes), HARD_CAP)
        self.hook_name = hook_name

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
        return result

    # --- ResumeProgram ------------------------------------------------------------------

    def resume(self, nodes):
        """Raise desired capacity by len(nodes), capped at the fleet ceiling. Returns the new desired."""
        group = self.group()
        sizes = asg.capacity_view(group)
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

    def _forget(self, node):
        """Remove a dynamic node whose instance is gone, so the next instance registers afresh."""
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
                self._forget(node)
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


def main(argv=None, slurm=None, fleet=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("resume", "suspend", "lifecycle") or (argv[0] != "lifecycle" and len(argv) < 2):
        print("usage: slurm_fleet.py resume|suspend HOSTLIST | lifecycle", file=sys.stderr)
        return 2
    group_name = os.environ.get("SLURM_FLEET_ASG", "")
    if not group_name:
        print("slurm_fleet: SLURM_FLEET_ASG is not set (slurm_controller_fleet_asg_name)", file=sys.stderr)
        return 2
    slurm = slurm or Slurm()
    try:
        fleet = fleet or Fleet(
            group_name,
            slurm,
            max_nodes=int(os.environ.get("SLURM_FLEET_MAX_NODES", HARD_CAP)),
            hook_name=os.environ.get("SLURM_FLEET_LIFECYCLE_HOOK", ""),
        )
        if argv[0] == "lifecycle":
            fleet.lifecycle()
        else:
            nodes = slurm.hostnames(argv[1])
            getattr(fleet, argv[0])(nodes)
    except FleetError as e:
        log(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
