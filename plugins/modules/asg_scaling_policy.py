#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_scaling_policy
short_description: A simple scaling policy of an Auto Scaling Group and the CloudWatch alarms that trigger it
version_added: 0.1.0
description:
  - Ensures one C(SimpleScaling) policy (change in capacity plus cooldown) on an existing Auto Scaling
    Group and the CloudWatch alarms whose action is that policy. An alarm watches either one metric
    or a metric-math expression over several metrics (for example "queue short B(and) CPU low").
  - Compares the fields it sets with what AWS returns and calls C(PutScalingPolicy) /
    C(PutMetricAlarm) only for what differs.
  - "Why not M(community.aws.autoscaling_policy) with M(amazon.aws.cloudwatch_metric_alarm): the
    policy module has no check mode (a check run skips it and cannot predict C(changed)), and the
    alarm module drops C(Metrics) from the comparison, so an alarm on a metric-math expression is
    reported changed and rewritten on every run. The alarm must also carry the policy ARN, which
    the two modules can only pass between tasks after a real run."
author:
  - dataplatform maintainers (@dataplatform)
options:
  policy_name:
    description: Name of the scaling policy.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the policy and the alarms; V(absent) deletes the alarms listed and the policy.
    type: str
    choices: [present, absent]
    default: present
  scaling_adjustment:
    description:
      - Instances to add (positive) or remove (negative) each time an alarm fires. Required with O(state=present).
      - The group never goes above its C(MaxSize) or below its C(MinSize).
    type: int
  cooldown:
    description: Seconds after a scaling activity before another one may start.
    type: int
    default: 300
  alarms:
    description: CloudWatch alarms whose action is this policy.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Alarm name.
        type: str
        required: true
      description:
        description: Alarm description.
        type: str
        default: ""
      comparison:
        description: How the value compares with O(alarms[].threshold).
        type: str
        required: true
        choices: [GreaterThanThreshold, GreaterThanOrEqualToThreshold, LessThanThreshold, LessThanOrEqualToThreshold]
      threshold:
        description: Threshold.
        type: float
        required: true
      evaluation_periods:
        description: Periods the condition must hold.
        type: int
        default: 2
      period:
        description: Seconds per period.
        type: int
        default: 60
      treat_missing_data:
        description: How missing data points count.
        type: str
        choices: [missing, notBreaching, breaching, ignore]
        default: missing
      metric:
        description:
          - The single metric watched. Mutually exclusive with O(alarms[].expression).
          - Keys C(namespace), C(name), C(dimensions) (a dict) and C(statistic) (default C(Average)).
        type: dict
      expression:
        description:
          - Metric-math expression over the ids of O(alarms[].metrics), for example C(IF(q < 2 AND cpu < 30, 1, 0)).
        type: str
      metrics:
        description:
          - With O(alarms[].expression), the metrics it uses, keyed by id; each value like O(alarms[].metric).
        type: dict
extends_documentation_fragment:
  - dataplatform.dask.asg
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Add two workers when the Dask queue is long
  dataplatform.dask.asg_scaling_policy:
    name: dask-workers
    policy_name: dask-workers-scale-up
    scaling_adjustment: 2
    cooldown: 300
    alarms:
      - name: dask-workers-queue-high
        comparison: GreaterThanThreshold
        threshold: 10
        metric: {namespace: Dask/Cluster, name: QueuedTasks, dimensions: {ClusterName: prod}}

- name: Remove one worker when the queue is short and the CPUs idle
  dataplatform.dask.asg_scaling_policy:
    name: dask-workers
    policy_name: dask-workers-scale-down
    scaling_adjustment: -1
    alarms:
      - name: dask-workers-idle
        comparison: GreaterThanOrEqualToThreshold
        threshold: 1
        expression: IF(q < 2 AND cpu < 30, 1, 0)
        metrics:
          q: {namespace: Dask/Cluster, name: QueuedTasks, dimensions: {ClusterName: prod}}
          cpu: {namespace: AWS/EC2, name: CPUUtilization, dimensions: {AutoScalingGroupName: dask-workers}}
"""

RETURN = r"""
policy:
  description: The policy (predicted in check mode; C(arn) is empty for a policy not yet created).
  returned: always
  type: dict
  contains:
    name:
      description: Policy name.
      type: str
      returned: always
    arn:
      description: Policy ARN.
      type: str
      returned: always
    scaling_adjustment:
      description: Change in capacity.
      type: int
      returned: when O(state=present)
    cooldown:
      description: Cooldown in seconds.
      type: int
      returned: when O(state=present)
changed_alarms:
  description: Names of the alarms created, updated or deleted (or that would be in check mode).
  returned: always
  type: list
  elements: str
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.dataplatform.dask.plugins.module_utils import asg

# Fields compared between the alarm we want and the alarm AWS returns, with AWS's default when absent.
ALARM_FIELDS = {
    "AlarmDescription": "",
    "ComparisonOperator": None,
    "Threshold": None,
    "EvaluationPeriods": None,
    "TreatMissingData": "missing",
    "AlarmActions": [],
    "ActionsEnabled": True,
    "Namespace": None,
    "MetricName": None,
    "Statistic": None,
    "Period": None,
    "Dimensions": [],
    "Metrics": [],
}


def _dimensions(values):
    return sorted(({"Name": k, "Value": str(v)} for k, v in (values or {}).items()), key=lambda d: d["Name"])


def _metric_error(metric, where):
    missing = [k for k in ("namespace", "name") if not metric.get(k)]
    unknown = sorted(set(metric) - {"namespace", "name", "dimensions", "statistic"})
    if missing:
        return f"{where} needs {' and '.join(missing)}"
    if unknown:
        return f"{where} has unknown key(s) {', '.join(unknown)} (use namespace, name, dimensions, statistic)"
    return None


def validate_alarms(alarms):
    """Return an error naming the alarm and field to fix, or None. Pure: runs before any AWS call."""
    names = [a["name"] for a in alarms]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        return f"alarm name(s) {', '.join(duplicated)} listed twice"
    for alarm in alarms:
        where = f"alarm {alarm['name']}"
        if bool(alarm.get("metric")) == bool(alarm.get("expression")):
            return f"{where}: give exactly one of metric and expression"
        if alarm.get("metric"):
            error = _metric_error(alarm["metric"], f"{where} metric")
        elif not alarm.get("metrics"):
            error = f"{where}: expression needs metrics"
        else:
            error = next(
                (
                    e
                    for e in (_metric_error(m, f"{where} metrics.{i}") for i, m in sorted(alarm["metrics"].items()))
                    if e
                ),
                None,
            )
        if error:
            return error
    return None


def desired_alarm(alarm, policy_arn):
    params = {
        "AlarmName": alarm["name"],
        "AlarmDescription": alarm["description"] or "",
        "ComparisonOperator": alarm["comparison"],
        "Threshold": float(alarm["threshold"]),
        "EvaluationPeriods": alarm["evaluation_periods"],
        "TreatMissingData": alarm["treat_missing_data"],
        "AlarmActions": [policy_arn],
        "ActionsEnabled": True,
    }
    if alarm.get("metric"):
        metric = alarm["metric"]
        params.update(
            Namespace=metric["namespace"],
            MetricName=metric["name"],
            Statistic=metric.get("statistic") or "Average",
            Period=alarm["period"],
            Dimensions=_dimensions(metric.get("dimensions")),
        )
    else:
        queries = [
            {
                "Id": metric_id,
                "MetricStat": {
                    "Metric": {
                        "Namespace": metric["namespace"],
                        "MetricName": metric["name"],
                        "Dimensions": _dimensions(metric.get("dimensions")),
                    },
                    "Period": alarm["period"],
                    "Stat": metric.get("statistic") or "Average",
                },
                "ReturnData": False,
            }
            for metric_id, metric in sorted(alarm["metrics"].items())
        ]
        queries.append({"Id": "result", "Expression": alarm["expression"], "Label": alarm["name"], "ReturnData": True})
        params["Metrics"] = queries
    return params


def _normalized(alarm):
    view = {key: alarm.get(key, default) for key, default in ALARM_FIELDS.items()}
    view["Dimensions"] = sorted(view["Dimensions"] or [], key=lambda d: d["Name"])
    view["Metrics"] = sorted(view["Metrics"] or [], key=lambda m: m["Id"])
    return view


def alarm_differs(existing, wanted):
    return existing is None or _normalized(existing) != _normalized(wanted)


def ensure_policy(module, client, name, *, existing, adjustment, cooldown, check_mode):
    wanted = {"AdjustmentType": "ChangeInCapacity", "ScalingAdjustment": adjustment, "Cooldown": cooldown}
    current = {k: existing.get(k) for k in wanted} if existing else None
    arn = existing.get("PolicyARN", "") if existing else ""
    if current == wanted:
        return False, arn
    if not check_mode:
        asg.call(
            module,
            client,
            f"put scaling policy {module.params['policy_name']}",
            name,
            "put_scaling_policy",
            AutoScalingGroupName=name,
            PolicyName=module.params["policy_name"],
            PolicyType="SimpleScaling",
            **wanted,
        )
        arn = (describe_policy(module, client, name) or {}).get("PolicyARN", "")
    return True, arn


def describe_policy(module, client, name):
    policies = asg.call(
        module,
        client,
        f"describe scaling policy {module.params['policy_name']}",
        name,
        "describe_policies",
        AutoScalingGroupName=name,
        PolicyNames=[module.params["policy_name"]],
    ).get("ScalingPolicies", [])
    return policies[0] if policies else None


def describe_alarms(module, cloudwatch, name, alarm_names):
    if not alarm_names:
        return {}
    try:
        found = cloudwatch.describe_alarms(aws_retry=True, AlarmNames=alarm_names, AlarmTypes=["MetricAlarm"])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        asg.fail_aws(module, e, f"describe alarms {', '.join(alarm_names)}", name)
    return {a["AlarmName"]: a for a in found.get("MetricAlarms", [])}


def ensure_alarms(module, cloudwatch, name, *, alarms, existing, policy_arn, check_mode):
    changed = []
    for alarm in alarms:
        wanted = desired_alarm(alarm, policy_arn or "(policy to be created)")
        if not alarm_differs(existing.get(alarm["name"]), wanted):
            continue
        changed.append(alarm["name"])
        if check_mode:
            continue
        try:
            cloudwatch.put_metric_alarm(aws_retry=True, **wanted)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            asg.fail_aws(module, e, f"put alarm {alarm['name']}", name)
    return changed


def ensure_absent(module, client, cloudwatch, name, *, existing_policy, existing_alarms, check_mode):
    doomed = sorted(existing_alarms)
    if not check_mode:
        if doomed:
            try:
                cloudwatch.delete_alarms(aws_retry=True, AlarmNames=doomed)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                asg.fail_aws(module, e, f"delete alarms {', '.join(doomed)}", name)
        if existing_policy:
            asg.call(
                module,
                client,
                f"delete scaling policy {module.params['policy_name']}",
                name,
                "delete_policy",
                AutoScalingGroupName=name,
                PolicyName=module.params["policy_name"],
            )
    return bool(existing_policy) or bool(doomed), doomed


def run(module):
    params = module.params
    name = params["name"]
    client = asg.asg_client(module)
    cloudwatch = asg.asg_client(module, "cloudwatch")
    asg.get_group(module, client, name)
    existing_policy = describe_policy(module, client, name)
    existing_alarms = describe_alarms(module, cloudwatch, name, [a["name"] for a in params["alarms"]])

    before = {
        "policy": {k: existing_policy.get(k) for k in ("ScalingAdjustment", "Cooldown")} if existing_policy else None,
        "alarms": sorted(existing_alarms),
    }
    if params["state"] == "absent":
        changed, changed_alarms = ensure_absent(
            module,
            client,
            cloudwatch,
            name,
            existing_policy=existing_policy,
            existing_alarms=existing_alarms,
            check_mode=module.check_mode,
        )
        policy = {"name": params["policy_name"], "arn": ""}
        after = {"policy": None, "alarms": []}
    else:
        changed_policy, arn = ensure_policy(
            module,
            client,
            name,
            existing=existing_policy,
            adjustment=params["scaling_adjustment"],
            cooldown=params["cooldown"],
            check_mode=module.check_mode,
        )
        changed_alarms = ensure_alarms(
            module,
            cloudwatch,
            name,
            alarms=params["alarms"],
            existing=existing_alarms,
            policy_arn=arn,
            check_mode=module.check_mode,
        )
        changed = changed_policy or bool(changed_alarms)
        policy = {
            "name": params["policy_name"],
            "arn": arn,
            "scaling_adjustment": params["scaling_adjustment"],
            "cooldown": params["cooldown"],
        }
        after = {
            "policy": {"ScalingAdjustment": params["scaling_adjustment"], "Cooldown": params["cooldown"]},
            "alarms": sorted(a["name"] for a in params["alarms"]),
        }
    result = {"changed": changed, "policy": policy, "changed_alarms": changed_alarms}
    asg.exit_with_diff(module, result, before, after)


def main():
    argument_spec = asg.asg_argument_spec(
        policy_name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        scaling_adjustment=dict(type="int"),
        cooldown=dict(type="int", default=300),
        alarms=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                name=dict(type="str", required=True),
                description=dict(type="str", default=""),
                comparison=dict(
                    type="str",
                    required=True,
                    choices=[
                        "GreaterThanThreshold",
                        "GreaterThanOrEqualToThreshold",
                        "LessThanThreshold",
                        "LessThanOrEqualToThreshold",
                    ],
                ),
                threshold=dict(type="float", required=True),
                evaluation_periods=dict(type="int", default=2),
                period=dict(type="int", default=60),
                treat_missing_data=dict(
                    type="str", default="missing", choices=["missing", "notBreaching", "breaching", "ignore"]
                ),
                metric=dict(type="dict"),
                expression=dict(type="str"),
                metrics=dict(type="dict"),
            ),
        ),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[["state", "present", ["scaling_adjustment"]]],
    )
    params = module.params
    where = f"ensure scaling policy {params['policy_name']} on ASG {params['name']}"
    if params["state"] == "present" and params["scaling_adjustment"] == 0:
        module.fail_json(msg=f"{where}: scaling_adjustment=0 would never change the group")
    if params["cooldown"] < 0:
        module.fail_json(msg=f"{where}: cooldown={params['cooldown']} must be >= 0")
    error = validate_alarms(params["alarms"])
    if error:
        module.fail_json(msg=f"{where}: {error}")
    asg.run_module(module, run)


if __name__ == "__main__":
    main()
