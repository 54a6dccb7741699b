#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_instance_protection
short_description: Protect named instances of an Auto Scaling Group from scale-in, or remove the protection
version_added: 0.1.0
description:
  - Sets the scale-in protection of the named instances of an Auto Scaling Group, changing only
    those whose protection differs.
  - Every id in O(instance_ids) must be an instance of the group; otherwise the module fails before
    changing any instance and names the ids it did not find.
  - "Why not M(amazon.aws.autoscaling_instance) with O(amazon.aws.autoscaling_instance#module:protection):
    its default O(amazon.aws.autoscaling_instance#module:state=present) attaches ids that are not in
    the group and takes instances out of standby as a side effect of a protection change; an unknown
    id is therefore an attach attempt, not an error. AWS itself accepts an id of another group only
    to fail part way. This module only ever changes protection."
author:
  - dataplatform maintainers (@dataplatform)
options:
  instance_ids:
    description:
      - EC2 instance ids, all members of the group.
    type: list
    elements: str
    required: true
  protected:
    description:
      - V(true) protects the instances from scale-in, V(false) removes the protection.
    type: bool
    required: true
extends_documentation_fragment:
  - dataplatform.dask.asg
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Keep the worker holding a long job's data from being scaled in
  dataplatform.dask.asg_instance_protection:
    name: dask-workers
    instance_ids: [i-0123456789abcdef0]
    protected: true
"""

RETURN = r"""
instances:
  description: The named instances after the change (predicted in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: EC2 instance id.
      type: str
      returned: always
    protected_from_scale_in:
      description: Whether the instance is protected from scale-in.
      type: bool
      returned: always
    lifecycle_state:
      description: The instance's lifecycle state in the group.
      type: str
      returned: always
changed_ids:
  description: Ids whose protection was (or in check mode would be) changed.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.dataplatform.dask.plugins.module_utils import asg


def compute_protection(instances, instance_ids, protected, name):
    """Return (ids to change, predicted views of the named instances) or raise AsgError for unknown ids."""
    by_id = {i["instance_id"]: i for i in instances}
    unknown = sorted(set(instance_ids) - set(by_id))
    if unknown:
        raise asg.AsgError(
            f"set scale-in protection on ASG {name}: instance(s) {', '.join(unknown)} are not in the group "
            f"(members: {', '.join(sorted(by_id)) or 'none'}); no instance was changed"
        )
    to_change = sorted(i for i in set(instance_ids) if by_id[i]["protected_from_scale_in"] != protected)
    after = []
    for instance_id in sorted(set(instance_ids)):
        view = asg.deep_copy(by_id[instance_id])
        view["protected_from_scale_in"] = protected
        after.append(view)
    return to_change, after


def ensure_protection(module, client, name, *, instances, instance_ids, protected, check_mode):
    to_change, after = compute_protection(instances, instance_ids, protected, name)
    if to_change and not check_mode:
        asg.call(
            module,
            client,
            "set scale-in protection",
            name,
            "set_instance_protection",
            AutoScalingGroupName=name,
            InstanceIds=to_change,
            ProtectedFromScaleIn=protected,
        )
    return to_change, after


def run(module):
    name = module.params["name"]
    client = asg.asg_client(module)
    group = asg.get_group(module, client, name)
    instances = asg.instances_view(group)
    ids = module.params["instance_ids"]
    to_change, after = ensure_protection(
        module,
        client,
        name,
        instances=instances,
        instance_ids=ids,
        protected=module.params["protected"],
        check_mode=module.check_mode,
    )
    result = {"changed": bool(to_change), "instances": after, "changed_ids": to_change}
    if module._diff:  # pylint: disable=protected-access
        before = [i for i in instances if i["instance_id"] in set(ids)]
        result["diff"] = {
            "before": {i["instance_id"]: i["protected_from_scale_in"] for i in before},
            "after": {i["instance_id"]: i["protected_from_scale_in"] for i in after},
        }
    module.exit_json(**result)


def main():
    argument_spec = asg.asg_argument_spec(
        instance_ids=dict(type="list", elements="str", required=True),
        protected=dict(type="bool", required=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    if not module.params["instance_ids"]:
        module.fail_json(msg=f"set scale-in protection on ASG {module.params['name']}: instance_ids is empty")
    asg.run_module(module, run)


if __name__ == "__main__":
    main()
