# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Shared code for the dataplatform.dask Auto Scaling Group modules.

Every module reads the group once, computes what it wants, acts only on the
difference and returns ``(changed, predicted_state)``. Calls go through a client
wrapped in ``AWSRetry.jittered_backoff``; failures name the action and the group.
"""

from __future__ import annotations

import copy

try:
    import botocore
    from botocore.waiter import WaiterModel, create_waiter_with_client
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

try:
    from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
    from ansible_collections.amazon.aws.plugins.module_utils.waiter import custom_waiter_config
except ImportError:
    # Outside Ansible: the Slurm fleet hooks (roles/slurm_controller/files/slurm_fleet.py) run
    # on the controller node with boto3 only and use the pure helpers below.
    AWSRetry = custom_waiter_config = None

# Throttling and the short-lived "a scaling activity is running" conflicts are worth
# retrying; everything else is reported at once.
RETRY_CODES = ["ScalingActivityInProgress", "ResourceContention"]

SCALING_PROCESSES = [
    "Launch",
    "Terminate",
    "AddToLoadBalancer",
    "AlarmNotification",
    "AZRebalance",
    "HealthCheck",
    "InstanceRefresh",
    "ReplaceUnhealthy",
    "ScheduledActions",
]

# Instance refresh statuses during which a new refresh cannot be started.
ACTIVE_REFRESH_STATUSES = ["Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"]


class AsgError(Exception):
    """Bad input or a state the module refuses to act on; nothing has been changed."""


def asg_argument_spec(**options):
    """The module's argument_spec: the group name (doc fragment dataplatform.dask.asg) and ``options``."""
    return dict(name=dict(type="str", required=True, aliases=["group_name"]), **options)


def run_module(module, run):
    """Call ``run(module)``; an AsgError fails the module with its message."""
    try:
        run(module)
    except AsgError as e:
        module.fail_json(msg=str(e))


def exit_with_diff(module, result, before, after):
    """Exit with ``result``, plus ``diff`` {before, after} in diff mode."""
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


def asg_client(module, service="autoscaling"):
    return module.client(
        service,
        retry_decorator=AWSRetry.jittered_backoff(
            retries=10, delay=1, max_delay=30, catch_extra_error_codes=RETRY_CODES
        ),
    )


def fail_aws(module, exc, action, group, **kwargs):
    """Fail with a message that names the action and the group: 'start instance refresh on ASG x: ...'."""
    module.fail_json_aws(exc, msg=f"{action} on ASG {group}", **kwargs)


def call(module, client, action, group, method, **params):
    """Run one API call through the retrying client; any AWS error fails the module naming the action."""
    try:
        return getattr(client, method)(aws_retry=True, **params)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        fail_aws(module, e, action, group)


def get_group(module, client, name):
    """The group as DescribeAutoScalingGroups returns it; fails naming the group when it does not exist."""
    groups = call(
        module,
        client,
        "describe group",
        name,
        "describe_auto_scaling_groups",
        AutoScalingGroupNames=[name],
    ).get("AutoScalingGroups", [])
    if not groups:
        raise AsgError(f"ASG {name} not found (region {module.region}): check the group name and region")
    return groups[0]


def find_lifecycle_hook(module, client, name, hook_name):
    """The lifecycle hook ``hook_name`` of group ``name`` as DescribeLifecycleHooks returns it, or None."""
    hooks = call(
        module,
        client,
        f"describe lifecycle hook {hook_name}",
        name,
        "describe_lifecycle_hooks",
        AutoScalingGroupName=name,
        LifecycleHookNames=[hook_name],
    ).get("LifecycleHooks", [])
    return hooks[0] if hooks else None


def instance_view(instance):
    """The fields of one ASG instance the modules compare and return."""
    view = {
        "instance_id": instance["InstanceId"],
        "lifecycle_state": instance.get("LifecycleState"),
        "health_status": instance.get("HealthStatus"),
        "protected_from_scale_in": bool(instance.get("ProtectedFromScaleIn", False)),
        "availability_zone": instance.get("AvailabilityZone"),
    }
    lt = instance.get("LaunchTemplate")
    if lt:
        view["launch_template"] = {
            "launch_template_id": lt.get("LaunchTemplateId"),
            "launch_template_name": lt.get("LaunchTemplateName"),
            "version": str(lt.get("Version")) if lt.get("Version") is not None else None,
        }
    return view


def instances_view(group):
    return sorted((instance_view(i) for i in group.get("Instances", [])), key=lambda i: i["instance_id"])


def capacity_view(group):
    return {
        "min_size": group["MinSize"],
        "max_size": group["MaxSize"],
        "desired_capacity": group["DesiredCapacity"],
        "suspended_processes": sorted(p["ProcessName"] for p in group.get("SuspendedProcesses", [])),
    }


def check_bounds(min_size, max_size, desired):
    """Return an error message when the given sizes break min <= desired <= max, else None.

    Any of the three may be None (not given); only the given ones are compared.
    """
    for label, value in (("min_size", min_size), ("max_size", max_size), ("desired_capacity", desired)):
        if value is not None and value < 0:
            return f"{label}={value} is negative: sizes are instance counts >= 0"
    if min_size is not None and max_size is not None and min_size > max_size:
        return f"min_size={min_size} is above max_size={max_size}: set min_size <= max_size"
    if desired is not None and max_size is not None and desired > max_size:
        return f"desired_capacity={desired} is above max_size={max_size}: lower desired_capacity or raise max_size"
    if desired is not None and min_size is not None and desired < min_size:
        return f"desired_capacity={desired} is below min_size={min_size}: raise desired_capacity or lower min_size"
    return None


def wait_with_model(client, name, model, timeout, delay, **params):
    """Run a custom botocore waiter (a WaiterModel dict with one waiter called ``name``).

    ``client`` may be the retrying wrapper; the waiter needs the bare boto3 client.
    """
    raw = getattr(client, "client", client)
    waiter = create_waiter_with_client(name, WaiterModel(model), raw)
    config = custom_waiter_config(timeout=timeout, default_pause=delay)
    waiter.wait(WaiterConfig=config, **params)


def deep_copy(value):
    return copy.deepcopy(value)
