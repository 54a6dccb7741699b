#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_refresh_progress
short_description: Where an instance refresh stands and which instances a lifecycle hook holds for it
version_added: 0.1.0
description:
  - Reads, in one call of the module, the state of an instance refresh of an Auto Scaling Group
    and the group's instances, and tells whether the refresh has ended and which instances wait on
    a lifecycle hook. Changes nothing.
  - Made for an C(until) loop that follows a rolling update batch by batch (see
    C(playbooks/rolling_update.yml)); M(amazon.aws.autoscaling_instance_refresh_info) and
    M(amazon.aws.autoscaling_instance_info) each give one half, and C(until) can only repeat one task.
author:
  - dataplatform maintainers (@dataplatform)
options:
  instance_refresh_id:
    description: The refresh to read. The newest refresh of the group when omitted.
    type: str
  lifecycle_hook_name:
    description:
      - Report the instances waiting on this hook (its C(Terminating:Wait) or C(Pending:Wait) state).
      - Any instance in C(Terminating:Wait) when omitted.
    type: str
extends_documentation_fragment:
  - dataplatform.dask.asg
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Wait until the refresh needs us or has ended
  dataplatform.dask.asg_refresh_progress:
    name: dask-workers
    instance_refresh_id: "{{ refresh.instance_refresh.instance_refresh_id }}"
    lifecycle_hook_name: dask-worker-retire
  register: progress
  until: progress.done or progress.held_instances | length > 0
  retries: 240
  delay: 15
"""

RETURN = r"""
instance_refresh:
  description: The refresh as DescribeInstanceRefreshes returns it, in snake_case.
  returned: always
  type: dict
done:
  description: Whether the refresh has ended (successfully or not).
  returned: always
  type: bool
successful:
  description: Whether the refresh ended successfully.
  returned: always
  type: bool
held_instances:
  description: Ids of the instances waiting on the lifecycle hook.
  returned: always
  type: list
  elements: str
in_service:
  description: Number of instances of the group in service.
  returned: always
  type: int
desired_capacity:
  description: The group's desired capacity.
  returned: always
  type: int
"""

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.dataplatform.dask.plugins.module_utils import asg

TERMINAL = {"Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"}
WAIT_STATES = {
    "autoscaling:EC2_INSTANCE_TERMINATING": "Terminating:Wait",
    "autoscaling:EC2_INSTANCE_LAUNCHING": "Pending:Wait",
}


def read_refresh(module, client, name, refresh_id):
    params = {"AutoScalingGroupName": name}
    if refresh_id:
        params["InstanceRefreshIds"] = [refresh_id]
    refreshes = asg.call(
        module, client, "describe instance refreshes", name, "describe_instance_refreshes", **params
    ).get("InstanceRefreshes", [])
    if not refreshes:
        what = f"refresh {refresh_id}" if refresh_id else "any instance refresh"
        raise asg.AsgError(f"read refresh progress on ASG {name}: {what} not found")
    return refreshes[0]


def wait_state(module, client, name, hook_name):
    if not hook_name:
        return "Terminating:Wait"
    hook = asg.find_lifecycle_hook(module, client, name, hook_name)
    if hook is None:
        raise asg.AsgError(f"read refresh progress on ASG {name}: lifecycle hook {hook_name} not found on the group")
    return WAIT_STATES.get(hook["LifecycleTransition"], "Terminating:Wait")


def summarize(refresh, group, waiting_in):
    instances = asg.instances_view(group)
    return {
        "instance_refresh": camel_dict_to_snake_dict(refresh),
        "done": refresh.get("Status") in TERMINAL,
        "successful": refresh.get("Status") == "Successful",
        "held_instances": [i["instance_id"] for i in instances if i["lifecycle_state"] == waiting_in],
        "in_service": len([i for i in instances if i["lifecycle_state"] == "InService"]),
        "desired_capacity": group["DesiredCapacity"],
    }


def run(module):
    name = module.params["name"]
    client = asg.asg_client(module)
    waiting_in = wait_state(module, client, name, module.params["lifecycle_hook_name"])
    refresh = read_refresh(module, client, name, module.params["instance_refresh_id"])
    group = asg.get_group(module, client, name)
    module.exit_json(changed=False, **summarize(refresh, group, waiting_in))


def main():
    argument_spec = asg.asg_argument_spec(
        instance_refresh_id=dict(type="str"),
        lifecycle_hook_name=dict(type="str"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    asg.run_module(module, run)


if __name__ == "__main__":
    main()
