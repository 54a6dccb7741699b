#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_capacity
short_description: Set the size bounds of an existing Auto Scaling Group and suspend or resume its processes
version_added: 0.1.0
description:
  - Sets O(min_size), O(max_size) and O(desired_capacity) of an existing Auto Scaling Group (ASG),
    changing only the values that differ, and suspends or resumes only the scaling processes named.
  - Validates C(min_size <= desired_capacity <= max_size) before any API call. Values not given are
    taken from the group, so a partial change is checked against the group's current sizes.
  - "Why not M(amazon.aws.autoscaling_group): in check mode it reports C(changed=true) for every
    existing group; it has no diff mode; it does not check the sizes against each other (the API
    rejects desired > max, moto does not); O(amazon.aws.autoscaling_group#module:suspend_processes)
    defaults to an empty list, so any run that does not repeat the list resumes every suspended
    process; and every update also calls C(DisableMetricsCollection). This module touches the sizes
    and the processes named and nothing else. Use M(amazon.aws.autoscaling_group) to create the group."
author:
  - dataplatform maintainers (@dataplatform)
options:
  min_size:
    description:
      - Minimum number of instances. Not changed when omitted.
    type: int
  max_size:
    description:
      - Maximum number of instances. Not changed when omitted.
    type: int
  desired_capacity:
    description:
      - Number of instances the group should run. Not changed when omitted, except that AWS
        moves it into the new bounds when O(min_size) or O(max_size) would leave it outside.
    type: int
  suspend_processes:
    description:
      - Scaling processes to suspend. Processes not listed here or in O(resume_processes) are left as they are.
    type: list
    elements: str
    default: []
    choices: [Launch, Terminate, AddToLoadBalancer, AlarmNotification, AZRebalance, HealthCheck,
              InstanceRefresh, ReplaceUnhealthy, ScheduledActions]
  resume_processes:
    description:
      - Scaling processes to resume. A process may not be in both lists.
    type: list
    elements: str
    default: []
    choices: [Launch, Terminate, AddToLoadBalancer, AlarmNotification, AZRebalance, HealthCheck,
              InstanceRefresh, ReplaceUnhealthy, ScheduledActions]
  wait:
    description:
      - Wait until the number of C(InService) instances equals the desired capacity.
    type: bool
    default: false
extends_documentation_fragment:
  - dataplatform.dask.asg
  - dataplatform.dask.asg.WAIT
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Let the worker fleet scale between 5 and 20 nodes, starting at 5
  dataplatform.dask.asg_capacity:
    name: dask-workers
    min_size: 5
    max_size: 20
    desired_capacity: 5

- name: Hold the fleet still while maintenance runs (alarms and AZ rebalancing off)
  dataplatform.dask.asg_capacity:
    name: dask-workers
    suspend_processes: [AlarmNotification, AZRebalance]

- name: Let it scale on alarms again
  dataplatform.dask.asg_capacity:
    name: dask-workers
    resume_processes: [AlarmNotification, AZRebalance]
"""

RETURN = r"""
capacity:
  description: The group's sizes and suspended processes after the change (predicted in check mode).
  returned: always
  type: dict
  contains:
    min_size:
      description: Minimum size.
      type: int
      returned: always
      sample: 5
    max_size:
      description: Maximum size.
      type: int
      returned: always
      sample: 20
    desired_capacity:
      description: Desired capacity.
      type: int
      returned: always
      sample: 5
    suspended_processes:
      description: Names of the suspended scaling processes, sorted.
      type: list
      elements: str
      returned: always
      sample: [AZRebalance]
diff:
  description: Sizes and processes before and after, when run with C(--diff).
  returned: diff mode
  type: dict
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.dataplatform.dask.plugins.module_utils import asg

SIZE_KEYS = (("min_size", "MinSize"), ("max_size", "MaxSize"), ("desired_capacity", "DesiredCapacity"))

IN_SERVICE_WAITER = {
    "version": 2,
    "waiters": {
        "GroupInService": {
            "operation": "DescribeAutoScalingGroups",
            "delay": 15,
            "maxAttempts": 60,
            "acceptors": [
                {
                    "matcher": "path",
                    "argument": "length(AutoScalingGroups[0].Instances[?LifecycleState=='InService'])"
                    " == AutoScalingGroups[0].DesiredCapacity",
                    "expected": True,
                    "state": "success",
                },
            ],
        }
    },
}


def compute_sizes(current, wanted):
    """Merge the wanted sizes into the current ones the way AWS does.

    Returns (target, error): the sizes the group will have, or an error naming what to fix.
    """
    target = {key: current[key] for key, _api in SIZE_KEYS}
    target.update({k: v for k, v in wanted.items() if v is not None})
    if wanted.get("desired_capacity") is None:
        # AWS moves the desired capacity into new bounds by itself.
        target["desired_capacity"] = min(max(target["desired_capacity"], target["min_size"]), target["max_size"])
    error = asg.check_bounds(target["min_size"], target["max_size"], target["desired_capacity"])
    if error:
        error = (
            f"{error} (the group now has min_size={current['min_size']}, max_size={current['max_size']}, "
            f"desired_capacity={current['desired_capacity']})"
        )
    return target, error


def ensure_sizes(module, client, name, *, current, wanted, check_mode):
    target, error = compute_sizes(current, wanted)
    if error:
        raise asg.AsgError(f"set capacity on ASG {name}: {error}")
    changes = {api: target[key] for key, api in SIZE_KEYS if target[key] != current[key]}
    # Only send what the caller asked for: AWS adjusts desired within bounds itself.
    request = {}
    for key, api in SIZE_KEYS:
        if api in changes and wanted.get(key) is not None:
            request[api] = target[key]
    if not changes:
        return False, target
    if not check_mode:
        asg.call(
            module, client, "set capacity", name, "update_auto_scaling_group", AutoScalingGroupName=name, **request
        )
    return True, target


def ensure_processes(module, client, name, *, current, suspend, resume, check_mode):
    suspended = set(current["suspended_processes"])
    to_suspend = sorted(set(suspend) - suspended)
    to_resume = sorted(set(resume) & suspended)
    after = sorted((suspended | set(to_suspend)) - set(to_resume))
    if not check_mode:
        if to_suspend:
            asg.call(
                module,
                client,
                "suspend processes",
                name,
                "suspend_processes",
                AutoScalingGroupName=name,
                ScalingProcesses=to_suspend,
            )
        if to_resume:
            asg.call(
                module,
                client,
                "resume processes",
                name,
                "resume_processes",
                AutoScalingGroupName=name,
                ScalingProcesses=to_resume,
            )
    return bool(to_suspend or to_resume), after


def run(module):
    params = module.params
    name = params["name"]
    wanted = {key: params[key] for key, _api in SIZE_KEYS}
    client = asg.asg_client(module)
    group = asg.get_group(module, client, name)
    before = asg.capacity_view(group)

    changed_sizes, sizes = ensure_sizes(
        module, client, name, current=before, wanted=wanted, check_mode=module.check_mode
    )
    changed_procs, procs = ensure_processes(
        module,
        client,
        name,
        current=before,
        suspend=params["suspend_processes"],
        resume=params["resume_processes"],
        check_mode=module.check_mode,
    )
    after = dict(sizes, suspended_processes=procs)

    if (
        params["wait"]
        and not module.check_mode
        and after["desired_capacity"]
        != len([i for i in group.get("Instances", []) if i.get("LifecycleState") == "InService"])
    ):
        try:
            asg.wait_with_model(
                client,
                "GroupInService",
                IN_SERVICE_WAITER,
                params["wait_timeout"],
                params["wait_delay"],
                AutoScalingGroupNames=[name],
            )
        except botocore.exceptions.WaiterError as e:
            asg.fail_aws(module, e, f"wait for {after['desired_capacity']} InService instances", name)

    result = {"changed": changed_sizes or changed_procs, "capacity": after}
    asg.exit_with_diff(module, result, before, after)


def main():
    argument_spec = asg.asg_argument_spec(
        min_size=dict(type="int"),
        max_size=dict(type="int"),
        desired_capacity=dict(type="int"),
        suspend_processes=dict(type="list", elements="str", default=[], choices=asg.SCALING_PROCESSES),
        resume_processes=dict(type="list", elements="str", default=[], choices=asg.SCALING_PROCESSES),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=900),
        wait_delay=dict(type="int", default=15),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    # Checks that need no AWS call come first: nothing is read or changed on bad input.
    error = asg.check_bounds(params["min_size"], params["max_size"], params["desired_capacity"])
    if error:
        module.fail_json(msg=f"set capacity on ASG {params['name']}: {error}")
    both = sorted(set(params["suspend_processes"]) & set(params["resume_processes"]))
    if both:
        module.fail_json(
            msg=f"set processes on ASG {params['name']}: {', '.join(both)} listed in both "
            "suspend_processes and resume_processes; keep each process in one list"
        )
    asg.run_module(module, run)


if __name__ == "__main__":
    main()
