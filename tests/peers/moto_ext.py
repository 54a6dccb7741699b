"""Extend moto's Auto Scaling mock with what the platform uses and moto 5.2 lacks.

Importing this module patches moto in place, so the same behaviour is seen by in-process
tests (``from moto import mock_aws``) and by ``python -m tests.peers.moto_server_ext``:

* ``StartInstanceRefresh`` / ``DescribeInstanceRefreshes`` / ``CancelInstanceRefresh``: a
  rolling refresh simulated one step per ``DescribeInstanceRefreshes`` call (the call every
  waiter and the rolling_update playbook poll). Each step replaces one batch, sized from
  ``MinHealthyPercentage``; with a termination lifecycle hook on the group the leaving
  instances wait in ``Terminating:Wait`` until their action is completed; a replacement whose
  launch template image does not exist fails the refresh (the "cannot replace" case);
  a checkpoint pauses the refresh for one step, a suspended ``InstanceRefresh`` process
  pauses it until resumed; on success the group takes the desired configuration. A second
  start while one runs fails with ``InstanceRefreshInProgress``.
* ``CompleteLifecycleAction`` and ``RecordLifecycleActionHeartbeat`` with AWS's validation
  ("No active Lifecycle Action found with instance ID ...").
* ``DisableMetricsCollection`` (``amazon.aws.autoscaling_group`` calls it on every update).
* Each ASG instance reports the launch template version it was launched from, not the
  group's current one, so "which instances are outdated" can be answered.

Simplifications, on purpose: time does not pass (a checkpoint delay is one poll, warm-up is
none), replacements are ``InService`` at once, and the version an instance reports is the
resolved number.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone

from moto.autoscaling import models as _models
from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult, EmptyResult

TERMINATING_HOOK = "autoscaling:EC2_INSTANCE_TERMINATING"
ACTIVE = ("Pending", "InProgress", "Cancelling")

_PATCHED = False


class InstanceRefreshInProgress(AutoscalingClientError):
    code = "InstanceRefreshInProgress"
    message = "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh."


class ActiveInstanceRefreshNotFound(AutoscalingClientError):
    code = "ActiveInstanceRefreshNotFound"


def _now():
    return datetime.now(timezone.utc)


def _group(backend, name):
    group = backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(f"AutoScalingGroup name not found - {name}")
    return group


def _refreshes(group):
    if not hasattr(group, "_dp_refreshes"):
        group._dp_refreshes = []
    return group._dp_refreshes


def _template_of(group, spec=None):
    """(template, resolved version number) for a LaunchTemplate spec or the group's own one."""
    backend = group.ec2_backend
    if spec:
        if spec.get("LaunchTemplateId"):
            template = backend.get_launch_template(spec["LaunchTemplateId"])
        else:
            template = backend.get_launch_template_by_name(spec["LaunchTemplateName"])
        version = spec.get("Version") or "$Default"
    else:
        template = group.ec2_launch_template
        version = getattr(group, "launch_template_version", None) or "$Default"
    if template is None:
        return None, None
    return template, template.get_version(version).number


def _instance_version(state):
    number = getattr(state, "_dp_lt_version", None)
    if number is None:
        number = _template_of(state.auto_scaling_group)[1]
    return number


# --- per-instance launch template version ---------------------------------------------

_orig_replace = _models.FakeAutoScalingGroup.replace_autoscaling_group_instances


def _replace_instances(self, count_needed, propagated_tags):
    before = {id(s) for s in self.instance_states}
    _orig_replace(self, count_needed, propagated_tags)
    number = _template_of(self)[1]
    template_id = self.ec2_launch_template.id if self.ec2_launch_template else None
    for state in self.instance_states:
        if id(state) not in before:
            state._dp_lt_version = number
            state._dp_lt_id = template_id


def _launch_template(self):
    group = self.auto_scaling_group
    if group is None or group.ec2_launch_template is None:
        return None
    template_id = getattr(self, "_dp_lt_id", None) or group.ec2_launch_template.id
    template = group.ec2_backend.get_launch_template(template_id)
    return {
        "LaunchTemplateId": template.id,
        "LaunchTemplateName": template.name,
        "Version": str(_instance_version(self)),
    }


# --- instance refresh ------------------------------------------------------------------


def _outdated(group, refresh):
    template_id, number = refresh["_target"]
    protected_ok = refresh["Preferences"].get("ScaleInProtectedInstances") == "Refresh"
    return sorted(
        (
            s
            for s in group.instance_states
            if s.lifecycle_state == "InService"
            and (protected_ok or not s.protected_from_scale_in)
            and ((getattr(s, "_dp_lt_id", None) or template_id) != template_id or _instance_version(s) != number)
        ),
        key=lambda s: s.instance.id,
    )


def _has_terminating_hook(backend, group):
    return any(
        h.auto_scaling_group_name == group.name and h.lifecycle_transition == TERMINATING_HOOK
        for h in backend.lifecycle_hooks.values()
    )


def _finish(refresh, status, reason=None):
    refresh["Status"] = status
    refresh["EndTime"] = _now()
    if reason:
        refresh["StatusReason"] = reason


def _launch_replacements(backend, group, refresh, count):
    """Launch ``count`` instances from the target version; False (refresh failed) when that cannot be done."""
    template_id, number = refresh["_target"]
    template = group.ec2_backend.get_launch_template(template_id)
    image_id = template.get_version(number).image_id
    try:
        group.ec2_backend.describe_images(ami_ids=[image_id])
    except Exception:  # moto raises its own InvalidAMIID error
        _finish(
            refresh,
            "Failed",
            f"Launching a new EC2 instance failed: the image id '[{image_id}]' does not exist. "
            f"{count} instance(s) could not be replaced.",
        )
        return False
    saved = (group.ec2_launch_template, group.launch_template_version)
    group.ec2_launch_template, group.launch_template_version = template, str(number)
    try:
        group.replace_autoscaling_group_instances(count, group.get_propagated_tags())
    finally:
        group.ec2_launch_template, group.launch_template_version = saved
    refresh["_replaced"] += count
    return True


def _replace_leaving(backend, group, refresh):
    """Terminate the instances whose lifecycle action completed and launch their replacements."""
    leaving = [s.instance.id for s in group.instance_states if s.lifecycle_state == "Terminating:Proceed"]
    if not leaving:
        return True
    group.instance_states = [s for s in group.instance_states if s.instance.id not in leaving]
    group.ec2_backend.terminate_instances(leaving)
    if not _launch_replacements(backend, group, refresh, len(leaving)):
        return False
    refresh["PercentageComplete"] = min(100, int(100 * refresh["_replaced"] / max(refresh["_total"], 1)))
    return True


def _step(backend, group, refresh):
    """Advance one refresh by one step."""
    if refresh["Status"] == "Cancelling":
        _finish(refresh, "Cancelled", "Cancelled due to user request.")
        return
    if refresh["Status"] == "Pending":
        refresh["Status"] = "InProgress"
        return
    if "InstanceRefresh" in [p["ProcessName"] for p in group.suspended_processes]:
        # As on AWS: suspending the InstanceRefresh process pauses a running refresh.
        refresh["StatusReason"] = "The InstanceRefresh process is suspended; the refresh is paused."
        return
    # Instances whose lifecycle action completed now terminate and get replaced.
    if not _replace_leaving(backend, group, refresh):
        return
    waiting = sorted(s.instance.id for s in group.instance_states if s.lifecycle_state == "Terminating:Wait")
    refresh["PercentageComplete"] = min(100, int(100 * refresh["_replaced"] / max(refresh["_total"], 1)))
    if waiting:
        refresh["StatusReason"] = f"Waiting for lifecycle actions to complete on {', '.join(waiting)}."
        return
    outdated = _outdated(group, refresh)
    refresh["InstancesToUpdate"] = len(outdated)
    if not outdated:
        refresh["PercentageComplete"] = 100
        desired = refresh.get("DesiredConfiguration", {}).get("LaunchTemplate")
        if desired:
            group.ec2_launch_template = group.ec2_backend.get_launch_template(refresh["_target"][0])
            group.launch_template_version = desired.get("Version") or "$Default"
            group.provided_launch_template_version = desired.get("Version")
        _finish(refresh, "Successful")
        refresh.pop("StatusReason", None)
        return
    points = [p for p in refresh["Preferences"].get("CheckpointPercentages", []) if p < 100]
    reached = [p for p in points if refresh["PercentageComplete"] >= p and p not in refresh["_paused_at"]]
    if reached:
        refresh["_paused_at"].extend(reached)
        refresh["StatusReason"] = f"Waiting for checkpoint at {reached[-1]}% to pass."
        return
    refresh.pop("StatusReason", None)
    desired_capacity = group.desired_capacity or len(group.instance_states)
    min_healthy = refresh["Preferences"].get("MinHealthyPercentage", 90)
    batch = max(1, desired_capacity - math.ceil(desired_capacity * min_healthy / 100))
    chosen = outdated[:batch]
    if _has_terminating_hook(backend, group):
        for state in chosen:
            state.lifecycle_state = "Terminating:Wait"
        refresh["StatusReason"] = (
            f"Waiting for lifecycle actions to complete on {', '.join(s.instance.id for s in chosen)}."
        )
        return
    for state in chosen:
        state.lifecycle_state = "Terminating:Proceed"
    _replace_leaving(backend, group, refresh)


def start_instance_refresh(backend, name, strategy, preferences, desired):
    group = _group(backend, name)
    if any(r["Status"] in ACTIVE for r in _refreshes(group)):
        raise InstanceRefreshInProgress()
    template, number = _template_of(group, (desired or {}).get("LaunchTemplate"))
    if template is None:
        raise ValidationError(f"The Auto Scaling group {name} has no launch template to refresh to.")
    prefs = {"MinHealthyPercentage": 90, "SkipMatching": False}
    prefs.update(preferences or {})
    refresh = {
        "InstanceRefreshId": str(uuid.uuid4()),
        "AutoScalingGroupName": name,
        "Status": "Pending",
        "StartTime": _now(),
        "PercentageComplete": 0,
        "InstancesToUpdate": 0,
        "Preferences": prefs,
        "Strategy": strategy or "Rolling",
        "_target": (template.id, number),
        "_replaced": 0,
        "_total": 0,
        "_paused_at": [],
    }
    if desired:
        refresh["DesiredConfiguration"] = desired
    if not prefs.get("SkipMatching"):
        # Without skip matching every instance is replaced: mark them all outdated.
        for state in group.instance_states:
            state._dp_lt_version = -1 if state.lifecycle_state == "InService" else _instance_version(state)
    refresh["InstancesToUpdate"] = refresh["_total"] = len(_outdated(group, refresh))
    _refreshes(group).insert(0, refresh)
    return refresh["InstanceRefreshId"]


def describe_instance_refreshes(backend, name, ids):
    group = _group(backend, name)
    for refresh in _refreshes(group):
        if refresh["Status"] in ACTIVE:
            _step(backend, group, refresh)
    return [
        {k: v for k, v in r.items() if not k.startswith("_")}
        for r in _refreshes(group)
        if not ids or r["InstanceRefreshId"] in ids
    ]


def cancel_instance_refresh(backend, name):
    group = _group(backend, name)
    for refresh in _refreshes(group):
        if refresh["Status"] in ("Pending", "InProgress"):
            refresh["Status"] = "Cancelling"
            return refresh["InstanceRefreshId"]
    raise ActiveInstanceRefreshNotFound(
        f"No in progress or pending Instance Refresh found for Auto Scaling group {name}"
    )


# --- lifecycle actions -----------------------------------------------------------------


def _waiting_instance(backend, name, hook_name, instance_id):
    group = _group(backend, name)
    hook = backend.lifecycle_hooks.get(f"{name}_{hook_name}")
    if hook is None:
        raise ValidationError(f"No Lifecycle Hook found for the Auto Scaling group {name} with name {hook_name}")
    wait_state = "Terminating:Wait" if hook.lifecycle_transition == TERMINATING_HOOK else "Pending:Wait"
    for state in group.instance_states:
        if state.instance.id == instance_id and state.lifecycle_state == wait_state:
            return state
    raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")


def complete_lifecycle_action(backend, name, hook_name, instance_id, result):
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError(f"Invalid LifecycleActionResult {result}")
    state = _waiting_instance(backend, name, hook_name, instance_id)
    state.lifecycle_state = state.lifecycle_state.split(":")[0] + ":Proceed"


# --- response handlers -----------------------------------------------------------------


def _r_start_instance_refresh(self):
    refresh_id = start_instance_refresh(
        self.autoscaling_backend,
        self._get_param("AutoScalingGroupName"),
        self._get_param("Strategy"),
        self._get_param("Preferences", {}),
        self._get_param("DesiredConfiguration"),
    )
    return ActionResult({"InstanceRefreshId": refresh_id})


def _r_describe_instance_refreshes(self):
    refreshes = describe_instance_refreshes(
        self.autoscaling_backend,
        self._get_param("AutoScalingGroupName"),
        self._get_param("InstanceRefreshIds", []),
    )
    return ActionResult({"InstanceRefreshes": refreshes})


def _r_cancel_instance_refresh(self):
    refresh_id = cancel_instance_refresh(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
    return ActionResult({"InstanceRefreshId": refresh_id})


def _r_complete_lifecycle_action(self):
    complete_lifecycle_action(
        self.autoscaling_backend,
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("InstanceId"),
        self._get_param("LifecycleActionResult"),
    )
    return EmptyResult()


def _r_record_lifecycle_action_heartbeat(self):
    _waiting_instance(
        self.autoscaling_backend,
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("InstanceId"),
    )
    return EmptyResult()


def _r_disable_metrics_collection(self):
    group = _group(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
    names = self._get_param("Metrics") or []
    group.metrics = [m for m in (getattr(group, "metrics", None) or []) if names and m not in names]
    return EmptyResult()


def patch():
    """Apply the extension once; safe to call many times."""
    global _PATCHED  # noqa: PLW0603
    if _PATCHED:
        return
    _models.FakeAutoScalingGroup.replace_autoscaling_group_instances = _replace_instances
    _models.InstanceState.launch_template = property(_launch_template)
    AutoScalingResponse.start_instance_refresh = _r_start_instance_refresh
    AutoScalingResponse.describe_instance_refreshes = _r_describe_instance_refreshes
    AutoScalingResponse.cancel_instance_refresh = _r_cancel_instance_refresh
    AutoScalingResponse.complete_lifecycle_action = _r_complete_lifecycle_action
    AutoScalingResponse.record_lifecycle_action_heartbeat = _r_record_lifecycle_action_heartbeat
    AutoScalingResponse.disable_metrics_collection = _r_disable_metrics_collection
    _PATCHED = True


patch()
