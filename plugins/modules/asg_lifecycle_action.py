#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_lifecycle_action
short_description: Complete the lifecycle action an Auto Scaling Group instance is waiting on
version_added: 0.1.0
description:
  - Completes the lifecycle action of instances held by a lifecycle hook, typically the termination
    hook that keeps a leaving Dask worker alive until it has been retired gracefully.
  - Idempotent. An instance that has already moved past the hook (for a termination hook, one that
    is terminating, terminated or gone from the group but still known to EC2) is reported as done
    and left alone.
  - Fails before completing anything when the hook does not exist on the group, when an id is not
    known to the group or to EC2, or when an instance is not waiting on the hook (for example still
    C(InService)); the message names the instances and their states.
  - "Why not M(community.aws.autoscaling_complete_lifecycle_action): it has no check mode, always
    calls the API (a second run fails with C(No active Lifecycle Action found)), does not check the
    hook or the instance state first and reports failures without the group or instance."
  - Create the hook itself with M(community.aws.autoscaling_lifecycle_hook).
author:
  - dataplatform maintainers (@dataplatform)
options:
  lifecycle_hook_name:
    description: Name of the lifecycle hook holding the instances.
    type: str
    required: true
  instance_ids:
    description: Instances whose action to complete.
    type: list
    elements: str
    required: true
  result:
    description:
      - V(CONTINUE) lets the transition go on. For a termination hook both values terminate the
        instance; V(ABANDON) also stops other hooks' actions.
    type: str
    choices: [CONTINUE, ABANDON]
    default: CONTINUE
extends_documentation_fragment:
  - dataplatform.dask.asg
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Let the retired worker go
  dataplatform.dask.asg_lifecycle_action:
    name: dask-workers
    lifecycle_hook_name: dask-worker-retire
    instance_ids: ["{{ leaving_instance_id }}"]
    result: CONTINUE
"""

RETURN = r"""
completed:
  description: Ids whose lifecycle action was (or in check mode would be) completed.
  returned: always
  type: list
  elements: str
already_done:
  description: Ids that had already moved past the hook.
  returned: always
  type: list
  elements: str
hook:
  description: The lifecycle hook, in snake_case.
  returned: always
  type: dict
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.dataplatform.dask.plugins.module_utils import asg

# For each hook transition: the state an instance waits in, and the states that mean "already past it".
TRANSITIONS = {
    "autoscaling:EC2_INSTANCE_TERMINATING": {
        "wait": "Terminating:Wait",
        "done": {"Terminating:Proceed", "Terminating", "Terminated"},
        "ec2_done": {"shutting-down", "terminated"},
    },
    "autoscaling:EC2_INSTANCE_LAUNCHING": {
        "wait": "Pending:Wait",
        "done": {"Pending:Proceed", "InService", "Standby", "EnteringStandby"},
        "ec2_done": set(),
    },
}


def get_hook(module, client, name, hook_name):
    hook = asg.find_lifecycle_hook(module, client, name, hook_name)
    if hook is None:
        raise asg.AsgError(
            f"complete lifecycle action on ASG {name}: lifecycle hook {hook_name} not found on the group"
        )
    return hook


def ec2_states(module, ec2, name, instance_ids):
    """EC2 state of each id EC2 knows; unknown ids are simply absent (a filter, not an id list, never errors)."""
    if not instance_ids:
        return {}
    try:
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-id", "Values": list(instance_ids)}]
        )
        reservations = pages.build_full_result()["Reservations"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        asg.fail_aws(module, e, "describe instances", name)
    return {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}


def plan_completion(instances, instance_ids, hook, known_to_ec2, name):
    """Split ids into (to_complete, already_done) or raise AsgError naming every id that cannot be completed."""
    rules = TRANSITIONS.get(hook["LifecycleTransition"])
    if rules is None:
        raise asg.AsgError(
            f"complete lifecycle action on ASG {name}: hook {hook['LifecycleHookName']} has unsupported "
            f"transition {hook['LifecycleTransition']}"
        )
    by_id = {i["instance_id"]: i for i in instances}
    to_complete, done, problems = [], [], []
    for instance_id in sorted(set(instance_ids)):
        state = by_id.get(instance_id, {}).get("lifecycle_state")
        if state == rules["wait"]:
            to_complete.append(instance_id)
        elif state in rules["done"]:
            done.append(instance_id)
        elif state is not None:
            problems.append(f"{instance_id} is {state}, not {rules['wait']}")
        elif known_to_ec2.get(instance_id) in rules["ec2_done"]:
            done.append(instance_id)
        elif instance_id in known_to_ec2:
            problems.append(f"{instance_id} is not in the group (EC2 state {known_to_ec2[instance_id]})")
        else:
            problems.append(f"{instance_id} is not a known instance")
    if problems:
        raise asg.AsgError(
            f"complete lifecycle action {hook['LifecycleHookName']} on ASG {name}: {'; '.join(problems)}; "
            "nothing was completed"
        )
    return to_complete, done


def ensure_completed(module, client, name, *, hook_name, to_complete, result, check_mode):
    if check_mode:
        return bool(to_complete)
    for instance_id in to_complete:
        asg.call(
            module,
            client,
            f"complete lifecycle action {hook_name} for {instance_id}",
            name,
            "complete_lifecycle_action",
            AutoScalingGroupName=name,
            LifecycleHookName=hook_name,
            InstanceId=instance_id,
            LifecycleActionResult=result,
        )
    return bool(to_complete)


def run(module):
    params = module.params
    name, hook_name = params["name"], params["lifecycle_hook_name"]
    client = asg.asg_client(module)
    hook = get_hook(module, client, name, hook_name)
    group = asg.get_group(module, client, name)
    instances = asg.instances_view(group)
    outside = sorted(set(params["instance_ids"]) - {i["instance_id"] for i in instances})
    known = ec2_states(module, asg.asg_client(module, "ec2"), name, outside)
    to_complete, done = plan_completion(instances, params["instance_ids"], hook, known, name)
    changed = ensure_completed(
        module,
        client,
        name,
        hook_name=hook_name,
        to_complete=to_complete,
        result=params["result"],
        check_mode=module.check_mode,
    )
    result = {
        "changed": changed,
        "completed": to_complete,
        "already_done": done,
        "hook": camel_dict_to_snake_dict(hook),
    }
    if module._diff:  # pylint: disable=protected-access
        waiting = TRANSITIONS[hook["LifecycleTransition"]]["wait"]
        result["diff"] = {
            "before": {i: waiting for i in to_complete},
            "after": {i: f"{waiting.split(':')[0]}:Proceed" for i in to_complete},
        }
    module.exit_json(**result)


def main():
    argument_spec = asg.asg_argument_spec(
        lifecycle_hook_name=dict(type="str", required=True),
        instance_ids=dict(type="list", elements="str", required=True),
        result=dict(type="str", default="CONTINUE", choices=["CONTINUE", "ABANDON"]),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    if not module.params["instance_ids"]:
        module.fail_json(msg=f"complete lifecycle action on ASG {module.params['name']}: instance_ids is empty")
    asg.run_module(module, run)


if __name__ == "__main__":
    main()
