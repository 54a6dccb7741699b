#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_instance_refresh
short_description: Replace the instances of an Auto Scaling Group that do not run the wanted launch template version
version_added: 0.1.0
description:
  - Starts a rolling instance refresh when some instances of the group do not run the wanted launch
    template version (for example a new version carrying a new AMI), optionally waits for it with a
    botocore waiter, or cancels the running refresh.
  - Idempotent. With O(state=started), nothing is started when every instance already runs the wanted
    version (unless O(force=true)). With O(state=cancelled), nothing is done when no refresh is running.
  - Refuses, before changing anything, to start a refresh while another one is running on the group
    (status C(Pending), C(InProgress), C(Cancelling), C(RollbackInProgress) or C(Baking)); the message
    names the running refresh.
  - "Why not M(amazon.aws.autoscaling_instance_refresh): it has no desired configuration (launch
    template version), no checkpoints and no wait; a real run never reports C(changed); its check mode
    treats any past refresh, even a finished one, as running and predicts C(changed=false), and
    predicts C(changed=true) for cancelling a finished refresh; a refresh already running is retried
    with backoff on C(InstanceRefreshInProgress) instead of being refused."
author:
  - dataplatform maintainers (@dataplatform)
options:
  state:
    description:
      - V(started) starts a refresh when instances are out of date; V(cancelled) cancels the running one.
    type: str
    choices: [started, cancelled]
    default: started
  launch_template:
    description:
      - The launch template version the instances should run, sent as the refresh's desired
        configuration; AWS sets it on the group when the refresh succeeds.
      - When omitted, the group's own launch template and version are the target.
      - Pin a version number. C($Latest) and C($Default) are resolved at the time of the run, and an
        instance that AWS reports with C($Latest) is compared with the template's latest version.
    type: dict
    suboptions:
      id:
        description: Launch template id. One of O(launch_template.id) and O(launch_template.name) is required.
        type: str
      name:
        description: Launch template name.
        type: str
      version:
        description: Version number, C($Latest) or C($Default).
        type: str
        default: $Latest
  image_id:
    description:
      - Roll onto this AMI. The module uses the launch template version that is the target version
        (O(launch_template) or the group's) with this image, creating it from the target version when
        it does not exist yet (only the image differs), and pins the refresh to that version number.
      - Fails before any change when the image does not exist.
    type: str
  preferences:
    description:
      - How the refresh proceeds.
    type: dict
    default: {}
    suboptions:
      min_healthy_percentage:
        description:
          - Percentage of the desired capacity that must stay in service and healthy; sets the batch size.
        type: int
        default: 90
      max_healthy_percentage:
        description:
          - Percentage of the desired capacity that may be in service or pending (100 to 200). Above 100
            new instances are launched before old ones are terminated.
        type: int
      instance_warmup:
        description: Seconds a new instance needs before it counts as healthy.
        type: int
      checkpoint_percentages:
        description:
          - Percentages of replaced instances at which the refresh pauses for O(preferences.checkpoint_delay).
            Ascending, each 1 to 100, the last one 100.
        type: list
        elements: int
      checkpoint_delay:
        description: Seconds to pause at each checkpoint (0 to 172800).
        type: int
      skip_matching:
        description: Skip instances that already run the desired configuration.
        type: bool
        default: true
      scale_in_protected_instances:
        description: What to do with instances protected from scale-in.
        type: str
        choices: [Refresh, Ignore, Wait]
      standby_instances:
        description: What to do with instances in standby.
        type: str
        choices: [Terminate, Ignore, Wait]
  force:
    description:
      - Start a refresh even when every instance runs the wanted version.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait before failing when O(wait=true). The refresh is not cancelled on timeout.
    type: int
    default: 3600
extends_documentation_fragment:
  - dataplatform.dask.asg
  - dataplatform.dask.asg.WAIT
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Roll the workers onto launch template version 7, a quarter at a time
  dataplatform.dask.asg_instance_refresh:
    name: dask-workers
    launch_template:
      name: dask-worker
      version: "7"
    preferences:
      min_healthy_percentage: 75
      checkpoint_percentages: [25, 50, 100]
      checkpoint_delay: 300
    wait_timeout: 5400

- name: Start without waiting (the rolling_update playbook follows the batches itself)
  dataplatform.dask.asg_instance_refresh:
    name: dask-workers
    launch_template: {name: dask-worker, version: "7"}
    wait: false

- name: Roll the workers onto a freshly baked AMI (a new template version is made from the latest)
  dataplatform.dask.asg_instance_refresh:
    name: dask-workers
    image_id: ami-0123456789abcdef0
    preferences:
      min_healthy_percentage: 75

- name: Stop a refresh that goes wrong
  dataplatform.dask.asg_instance_refresh:
    name: dask-workers
    state: cancelled
"""

RETURN = r"""
instance_refresh:
  description:
    - The refresh started or cancelled (predicted in check mode), as DescribeInstanceRefreshes returns it in snake_case.
    - Empty when nothing was done.
  returned: always
  type: dict
  sample: {instance_refresh_id: "0e1a…", status: "Successful", percentage_complete: 100, instances_to_update: 0}
outdated_instances:
  description: Ids of the instances that did not run the wanted version when the module started.
  returned: always
  type: list
  elements: str
target:
  description: The wanted launch template, with the version resolved to a number.
  returned: when O(state=started)
  type: dict
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.dataplatform.dask.plugins.module_utils import asg


def _refresh_waiter(success, failure):
    acceptors = [
        {"matcher": "path", "argument": "InstanceRefreshes[0].Status", "expected": s, "state": "success"}
        for s in success
    ]
    acceptors += [
        {"matcher": "path", "argument": "InstanceRefreshes[0].Status", "expected": s, "state": "failure"}
        for s in failure
    ]
    return {"operation": "DescribeInstanceRefreshes", "delay": 15, "maxAttempts": 240, "acceptors": acceptors}


WAITERS = {
    "version": 2,
    "waiters": {
        "RefreshSuccessful": _refresh_waiter(
            ["Successful"], ["Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"]
        ),
        "RefreshStopped": _refresh_waiter(
            ["Cancelled", "Successful", "Failed", "RollbackSuccessful", "RollbackFailed"], []
        ),
    },
}


def validate_preferences(prefs):
    """Return an error naming the preference to fix, or None. Pure: runs before any AWS call."""
    return _check_health(prefs) or _check_checkpoints(prefs)


def _check_health(prefs):
    warmup = prefs.get("instance_warmup")
    if warmup is not None and warmup < 0:
        return f"preferences.instance_warmup={warmup} must be >= 0"
    low, high = prefs.get("min_healthy_percentage"), prefs.get("max_healthy_percentage")
    if low is not None and not 0 <= low <= 100:
        return f"preferences.min_healthy_percentage={low} must be between 0 and 100"
    if high is not None:
        if not 100 <= high <= 200:
            return f"preferences.max_healthy_percentage={high} must be between 100 and 200"
        if low is not None and high - low > 100:
            return f"preferences.max_healthy_percentage - min_healthy_percentage = {high - low}, must be <= 100"
    return None


def _check_checkpoints(prefs):
    points = prefs.get("checkpoint_percentages")
    if points:
        if any(not 1 <= p <= 100 for p in points):
            return f"preferences.checkpoint_percentages={points}: each value must be between 1 and 100"
        if points != sorted(set(points)):
            return f"preferences.checkpoint_percentages={points} must be unique and ascending"
        if points[-1] != 100:
            return f"preferences.checkpoint_percentages={points} must end with 100 so every instance is replaced"
    delay = prefs.get("checkpoint_delay")
    if delay is not None:
        if not points:
            return "preferences.checkpoint_delay needs preferences.checkpoint_percentages"
        if not 0 <= delay <= 172800:
            return f"preferences.checkpoint_delay={delay} must be between 0 and 172800"
    return None


def api_preferences(prefs):
    names = {
        "min_healthy_percentage": "MinHealthyPercentage",
        "max_healthy_percentage": "MaxHealthyPercentage",
        "instance_warmup": "InstanceWarmup",
        "checkpoint_percentages": "CheckpointPercentages",
        "checkpoint_delay": "CheckpointDelay",
        "skip_matching": "SkipMatching",
        "scale_in_protected_instances": "ScaleInProtectedInstances",
        "standby_instances": "StandbyInstances",
    }
    return {api: prefs[key] for key, api in names.items() if prefs.get(key) is not None}


def active_refresh(module, client, name):
    """The running refresh of the group (newest first), or None."""
    refreshes = asg.call(
        module,
        client,
        "describe instance refreshes",
        name,
        "describe_instance_refreshes",
        AutoScalingGroupName=name,
    ).get("InstanceRefreshes", [])
    for refresh in refreshes:
        if refresh.get("Status") in asg.ACTIVE_REFRESH_STATUSES:
            return refresh
    return None


def group_launch_template(group):
    if group.get("LaunchTemplate"):
        return group["LaunchTemplate"]
    mixed = group.get("MixedInstancesPolicy") or {}
    return (mixed.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification")


def resolve_target(module, ec2, name, group, wanted):
    """Return (target, template): target is {id, name, version (as asked), number (resolved int)}."""
    spec = wanted
    if spec is None:
        lt = group_launch_template(group)
        if not lt:
            raise asg.AsgError(
                f"start instance refresh on ASG {name}: the group has no launch template "
                "(launch configuration?); give launch_template"
            )
        spec = {"id": lt.get("LaunchTemplateId"), "name": lt.get("LaunchTemplateName"), "version": lt.get("Version")}
    query = {"LaunchTemplateIds": [spec["id"]]} if spec.get("id") else {"LaunchTemplateNames": [spec["name"]]}
    label = spec.get("id") or spec.get("name")
    try:
        templates = ec2.describe_launch_templates(aws_retry=True, **query)["LaunchTemplates"]
    except is_boto3_error_code(["InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateName.NotFoundException"]):
        templates = []
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
        asg.fail_aws(module, e, f"describe launch template {label}", name)
    if not templates:
        raise asg.AsgError(f"start instance refresh on ASG {name}: launch template {label} not found")
    template = templates[0]
    version = str(spec.get("version") or "$Default")
    number = resolve_version(template, version)
    if number is None:
        raise asg.AsgError(
            f"start instance refresh on ASG {name}: launch template {label} version {version!r} is not a number, "
            "$Latest or $Default"
        )
    if not 1 <= number <= template["LatestVersionNumber"]:
        raise asg.AsgError(
            f"start instance refresh on ASG {name}: launch template {label} has no version {number} "
            f"(latest is {template['LatestVersionNumber']})"
        )
    target = {
        "id": template["LaunchTemplateId"],
        "name": template["LaunchTemplateName"],
        "version": version,
        "number": number,
    }
    return target, template


def ensure_image_version(module, ec2, name, *, target, template, image_id, check_mode):
    """Return (created, target): the template version that is ``target`` with ``image_id``, made if missing.

    Reuses ``target`` when it already has the image, or the latest version when a previous run
    made it (same data, the image swapped); otherwise creates one from ``target`` (predicted in
    check mode). The new version is pinned by number.
    """
    action = f"start instance refresh on ASG {name}"
    try:
        images = ec2.describe_images(aws_retry=True, ImageIds=[image_id])["Images"]
    except is_boto3_error_code(["InvalidAMIID.NotFound", "InvalidAMIID.Malformed"]):
        images = []
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
        asg.fail_aws(module, e, f"describe image {image_id}", name)
    if not images:
        raise asg.AsgError(f"{action}: image {image_id} not found; check image_id and the region")
    wanted_numbers = sorted({target["number"], int(template["LatestVersionNumber"])})
    try:
        versions = ec2.describe_launch_template_versions(
            aws_retry=True, LaunchTemplateId=target["id"], Versions=[str(n) for n in wanted_numbers]
        )["LaunchTemplateVersions"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        asg.fail_aws(module, e, f"describe launch template {target['name']} versions", name)
    by_number = {int(v["VersionNumber"]): v.get("LaunchTemplateData", {}) for v in versions}
    base = by_number.get(target["number"], {})
    wanted = dict(base, ImageId=image_id)
    for number in (target["number"], int(template["LatestVersionNumber"])):
        if by_number.get(number) == wanted:
            return False, dict(target, version=str(number), number=number)
    number = int(template["LatestVersionNumber"]) + 1
    if not check_mode:
        try:
            number = ec2.create_launch_template_version(
                aws_retry=True,
                LaunchTemplateId=target["id"],
                SourceVersion=str(target["number"]),
                VersionDescription=f"{target['name']} version {target['number']} with image {image_id}",
                LaunchTemplateData={"ImageId": image_id},
            )["LaunchTemplateVersion"]["VersionNumber"]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            asg.fail_aws(module, e, f"create launch template {target['name']} version with image {image_id}", name)
    return True, dict(target, version=str(number), number=int(number))


def resolve_version(template, version):
    if version == "$Latest":
        return int(template["LatestVersionNumber"])
    if version == "$Default":
        return int(template["DefaultVersionNumber"])
    try:
        return int(version)
    except (TypeError, ValueError):
        return None


def outdated_instances(instances, target, template):
    """Ids of instances not launched from the target template version."""
    outdated = []
    for instance in instances:
        if instance.get("lifecycle_state", "").startswith("Terminat"):
            continue  # already leaving
        lt = instance.get("launch_template") or {}
        same = lt.get("launch_template_id") == target["id"] or lt.get("launch_template_name") == target["name"]
        number = resolve_version(template, lt.get("version")) if same else None
        if not same or number != target["number"]:
            outdated.append(instance["instance_id"])
    return sorted(outdated)


def ensure_started(module, client, name, *, ec2, group, params, check_mode):
    running = active_refresh(module, client, name)
    if running:
        raise asg.AsgError(
            f"start instance refresh on ASG {name}: refusing, refresh {running['InstanceRefreshId']} is already "
            f"{running['Status']} ({running.get('PercentageComplete', 0)}% done, started "
            f"{running.get('StartTime')}); wait for it to finish or cancel it with state=cancelled"
        )
    target, template = resolve_target(module, ec2, name, group, params["launch_template"])
    created = False
    if params["image_id"]:
        created, target = ensure_image_version(
            module, ec2, name, target=target, template=template, image_id=params["image_id"], check_mode=check_mode
        )
        template = dict(template, LatestVersionNumber=max(template["LatestVersionNumber"], target["number"]))
    outdated = outdated_instances(asg.instances_view(group), target, template)
    if not outdated and not params["force"]:
        return created, {}, outdated, target

    request = {
        "AutoScalingGroupName": name,
        "Strategy": "Rolling",
        "Preferences": api_preferences(params["preferences"]),
    }
    if params["launch_template"] is not None or params["image_id"]:
        request["DesiredConfiguration"] = {
            "LaunchTemplate": {"LaunchTemplateId": target["id"], "Version": target["version"]}
        }
    if check_mode:
        predicted = {
            "auto_scaling_group_name": name,
            "status": "Pending",
            "percentage_complete": 0,
            "instances_to_update": len(outdated),
            "preferences": camel_dict_to_snake_dict(request["Preferences"]),
        }
        return True, predicted, outdated, target
    try:
        refresh_id = client.start_instance_refresh(aws_retry=True, **request)["InstanceRefreshId"]
    except is_boto3_error_code("InstanceRefreshInProgress") as e:
        asg.fail_aws(module, e, "start instance refresh (refusing, another refresh started meanwhile)", name)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
        asg.fail_aws(module, e, "start instance refresh", name)
    if params["wait"]:
        wait_for(module, client, name, refresh_id, waiter="RefreshSuccessful", params=params)
    return True, describe_refresh(module, client, name, refresh_id), outdated, target


def describe_refresh(module, client, name, refresh_id):
    refreshes = asg.call(
        module,
        client,
        "describe instance refresh",
        name,
        "describe_instance_refreshes",
        AutoScalingGroupName=name,
        InstanceRefreshIds=[refresh_id],
    )["InstanceRefreshes"]
    return camel_dict_to_snake_dict(refreshes[0]) if refreshes else {}


def wait_for(module, client, name, refresh_id, *, waiter, params):
    try:
        asg.wait_with_model(
            client,
            waiter,
            WAITERS,
            params["wait_timeout"],
            params["wait_delay"],
            AutoScalingGroupName=name,
            InstanceRefreshIds=[refresh_id],
        )
    except botocore.exceptions.WaiterError as e:
        state = describe_refresh(module, client, name, refresh_id)
        module.fail_json(
            msg=(
                f"wait for instance refresh {refresh_id} on ASG {name}: {e}; status {state.get('status')} "
                f"({state.get('status_reason', 'no reason given')}), {state.get('percentage_complete', 0)}% done"
            ),
            instance_refresh=state,
        )


def ensure_cancelled(module, client, name, params, check_mode):
    running = active_refresh(module, client, name)
    if not running or running["Status"] == "Cancelling":
        state = camel_dict_to_snake_dict(running) if running else {}
        if running and params["wait"] and not check_mode:
            wait_for(module, client, name, running["InstanceRefreshId"], waiter="RefreshStopped", params=params)
            state = describe_refresh(module, client, name, running["InstanceRefreshId"])
        return False, state
    refresh_id = running["InstanceRefreshId"]
    if check_mode:
        return True, dict(camel_dict_to_snake_dict(running), status="Cancelling")
    asg.call(module, client, "cancel instance refresh", name, "cancel_instance_refresh", AutoScalingGroupName=name)
    if params["wait"]:
        wait_for(module, client, name, refresh_id, waiter="RefreshStopped", params=params)
    return True, describe_refresh(module, client, name, refresh_id)


def run(module):
    params = module.params
    name = params["name"]
    client = asg.asg_client(module)
    result = {}
    if params["state"] == "cancelled":
        running = active_refresh(module, client, name) if module._diff else None  # pylint: disable=protected-access
        changed, refresh = ensure_cancelled(module, client, name, params, module.check_mode)
        before = {"running_refresh": running["InstanceRefreshId"] if running else None}
        after = {"running_refresh": None}
        result.update(outdated_instances=[])
    else:
        ec2 = asg.asg_client(module, "ec2")
        group = asg.get_group(module, client, name)
        changed, refresh, outdated, target = ensure_started(
            module, client, name, ec2=ec2, group=group, params=params, check_mode=module.check_mode
        )
        before = {"outdated_instances": outdated, "running_refresh": None}
        after = {
            "outdated_instances": [] if changed else outdated,
            "running_refresh": refresh.get("instance_refresh_id", "(new)") if changed else None,
        }
        if changed and refresh.get("status") in ("Successful",):
            after["running_refresh"] = None
        result.update(outdated_instances=outdated, target=target)
    result.update(changed=changed, instance_refresh=refresh)
    asg.exit_with_diff(module, result, before, after)


def main():
    argument_spec = asg.asg_argument_spec(
        state=dict(type="str", default="started", choices=["started", "cancelled"]),
        launch_template=dict(
            type="dict",
            options=dict(
                id=dict(type="str"),
                name=dict(type="str"),
                version=dict(type="str", default="$Latest"),
            ),
            required_one_of=[["id", "name"]],
            mutually_exclusive=[["id", "name"]],
        ),
        preferences=dict(
            type="dict",
            default={},
            options=dict(
                min_healthy_percentage=dict(type="int", default=90),
                max_healthy_percentage=dict(type="int"),
                instance_warmup=dict(type="int"),
                checkpoint_percentages=dict(type="list", elements="int"),
                checkpoint_delay=dict(type="int"),
                skip_matching=dict(type="bool", default=True),
                scale_in_protected_instances=dict(type="str", choices=["Refresh", "Ignore", "Wait"]),
                standby_instances=dict(type="str", choices=["Terminate", "Ignore", "Wait"]),
            ),
        ),
        image_id=dict(type="str"),
        force=dict(type="bool", default=False),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=3600),
        wait_delay=dict(type="int", default=15),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    error = validate_preferences(module.params["preferences"])
    if error:
        module.fail_json(msg=f"start instance refresh on ASG {module.params['name']}: {error}")
    asg.run_module(module, run)


if __name__ == "__main__":
    main()
