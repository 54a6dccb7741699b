#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: slurm_sacctmgr
short_description: Manage Slurm QOS, accounts and user associations in the accounting database
version_added: 0.2.0
description:
  - Creates, updates or removes one Slurm QOS, account or user association with C(sacctmgr),
    changing only the values that differ from what C(sacctmgr show) reports.
  - Values are compared the way Slurm stores them (C(mem=8G) equals C(mem=8192M), flags and QOS
    lists in any order), so a second run reports no change. A TRES key dropped from a limit is
    cleared (set to C(-1)).
  - Bad input (a TRES that is not C(KEY=VALUE), an option that does not apply to O(entity), a
    default QOS missing from O(qos)) fails before anything is changed.
  - "Why a module of ours: Ansible has no sacctmgr module; C(community.general) has none, and
    C(command) tasks cannot report changes or run in check mode."
author:
  - dataplatform maintainers (@dataplatform)
options:
  entity:
    description: What to manage.
    type: str
    required: true
    choices: [qos, account, user]
  name:
    description: Name of the QOS, account or user.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates; V(absent) deletes the QOS, the account, or the user's
        association with O(account).
    type: str
    choices: [present, absent]
    default: present
  cluster:
    description: Cluster of the account or user association. Required for O(entity=account) and O(entity=user).
    type: str
  account:
    description: The account of a user association (O(entity=user) only; required there).
    type: str
  parent:
    description: Parent account of a new account (O(entity=account) only). Not changed on an existing account.
    type: str
    default: root
  description:
    description:
      - Description of a QOS or account; for an account also its organization. Not changed when omitted.
      - Slurm stores it in lower case; it is compared that way.
    type: str
  fairshare:
    description: Fair-share shares of an account or user association. Not changed when omitted.
    type: int
  qos:
    description: QOS an account or user association may use. Not changed when omitted.
    type: list
    elements: str
  default_qos:
    description: Default QOS of an account or user association; must be in O(qos) when both are given.
    type: str
  admin_level:
    description: Administrative level of a user (O(entity=user) only), for example V(Operator) for a service
      that must see every user's jobs despite C(PrivateData). Not changed when omitted.
    type: str
    choices: [None, Operator, Administrator]
  priority:
    description: Priority of a QOS (O(entity=qos) only). Not changed when omitted.
    type: int
  flags:
    description: Flags of a QOS (O(entity=qos) only), for example V(DenyOnLimit). Not changed when omitted;
      V([]) clears them.
    type: list
    elements: str
  max_tres_per_user:
    description:
      - "C(MaxTRESPerUser) of a QOS as a dict, for example C({cpu: 10, mem: 20G}). Not changed when
        omitted; keys not listed are cleared."
    type: dict
  max_tres_per_job:
    description: C(MaxTRESPerJob) of a QOS as a dict. Not changed when omitted; keys not listed are cleared.
    type: dict
  sacctmgr_path:
    description: The sacctmgr command.
    type: str
    default: sacctmgr
attributes:
  check_mode:
    support: full
    description: Runs the same reads and comparisons and skips only the sacctmgr calls that change anything.
  diff_mode:
    support: full
    description: Returns C(diff.before) and C(diff.after) with the fields the module manages.
  platform:
    support: full
    platforms: posix
    description: Runs where C(sacctmgr) reaches slurmdbd (the Slurm controller).
requirements:
  - sacctmgr (Slurm 22.05 or later) able to reach slurmdbd as an administrator (root or SlurmUser).
"""

EXAMPLES = r"""
- name: Analysts' QOS, refused at submit beyond 4 cores / 8 GB per job and 10 cores per user
  dataplatform.dask.slurm_sacctmgr:
    entity: qos
    name: analysts
    priority: 50
    flags: [DenyOnLimit]
    max_tres_per_job: {cpu: 4, mem: 8G}
    max_tres_per_user: {cpu: 10, mem: 20G}

- name: The analysts' account
  dataplatform.dask.slurm_sacctmgr:
    entity: account
    name: data_analysts
    cluster: dataplatform
    description: FreeIPA group data_analysts
    fairshare: 1
    qos: [analysts]
    default_qos: analysts

- name: alice in the analysts' account
  dataplatform.dask.slurm_sacctmgr:
    entity: user
    name: alice
    account: data_analysts
    cluster: dataplatform

- name: The gateway's service user sees every job
  dataplatform.dask.slurm_sacctmgr:
    entity: user
    name: dask-gateway
    account: root
    cluster: dataplatform
    admin_level: Operator
"""

RETURN = r"""
entity:
  description: The managed entity after the change (predicted in check mode); empty after deletion.
  returned: always
  type: dict
  sample:
    name: analysts
    priority: 50
    flags: [DenyOnLimit]
    max_tres_per_user: {cpu: "10", mem: "20480"}
diff:
  description: The managed fields before and after, when run with C(--diff).
  returned: diff mode
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dataplatform.dask.plugins.module_utils import slurm

# Options each entity accepts besides the common ones.
ENTITY_OPTIONS = {
    "qos": {"priority", "flags", "max_tres_per_user", "max_tres_per_job", "description"},
    "account": {"cluster", "parent", "description", "fairshare", "qos", "default_qos"},
    "user": {"cluster", "account", "fairshare", "qos", "default_qos", "admin_level"},
}
COMMON_OPTIONS = {"entity", "name", "state", "sacctmgr_path", "parent"}


def validate(params):
    """Refuse options that do not apply, missing required ones and malformed values, before any call."""
    entity = params["entity"]
    stray = sorted(
        k for k, v in params.items() if v is not None and k not in COMMON_OPTIONS and k not in ENTITY_OPTIONS[entity]
    )
    if stray:
        raise slurm.SlurmError(f"{entity} {params['name']}: {', '.join(stray)} do not apply to entity={entity}")
    if entity in ("account", "user") and not params["cluster"]:
        raise slurm.SlurmError(f"{entity} {params['name']}: set cluster (the Slurm ClusterName)")
    if entity == "user" and not params["account"]:
        raise slurm.SlurmError(f"user {params['name']}: set account (the association's account)")
    if params.get("qos") is not None and params.get("default_qos") and params["default_qos"] not in params["qos"]:
        raise slurm.SlurmError(
            f"{entity} {params['name']}: default_qos {params['default_qos']} is not in qos ({', '.join(params['qos'])})"
        )
    for key in ("max_tres_per_user", "max_tres_per_job"):
        if params.get(key) is not None:
            try:
                slurm.normalize_tres(params[key])
            except slurm.SlurmError as e:
                raise slurm.SlurmError(f"qos {params['name']}: {key}: {e}") from None


# --- reading ------------------------------------------------------------------------------


def read_qos(module, name):
    rows = slurm.show(
        module,
        f"read qos {name}",
        "qos",
        {"name": name},
        ["name", "priority", "flags", "maxtrespu", "maxtres", "description"],
    )
    rows = [r for r in rows if r["name"] == name]
    if not rows:
        return None
    r = rows[0]
    return {
        "name": name,
        "priority": int(r["priority"] or 0),
        "flags": slurm.split_list(r["flags"]),
        "max_tres_per_user": slurm.parse_tres(r["maxtrespu"]),
        "max_tres_per_job": slurm.parse_tres(r["maxtres"]),
        "description": r["description"],
    }


def read_association(module, action, where, user):
    """The association of account (user='') or account+user in a cluster, or None."""
    fields = ["cluster", "account", "user", "partition", "fairshare", "qos", "defaultqos"]
    rows = slurm.show(module, action, "association", where, fields)
    rows = [r for r in rows if r["user"] == user and r["account"] == where["account"] and not r["partition"]]
    if not rows:
        return None
    r = rows[0]
    share = r["fairshare"]
    return {
        "fairshare": int(share) if share.lstrip("-").isdigit() else share,
        "qos": slurm.split_list(r["qos"]),
        "default_qos": r["defaultqos"],
    }


def read_account(module, name, cluster):
    assoc = read_association(module, f"read account {name}", {"account": name, "cluster": cluster}, user="")
    if assoc is None:
        return None
    rows = slurm.show(module, f"read account {name}", "account", {"name": name}, ["account", "description"])
    description = next((r["description"] for r in rows if r["account"] == name), "")
    return dict(assoc, name=name, description=description)


def read_user(module, name, account, cluster):
    assoc = read_association(
        module,
        f"read user {name}",
        {"account": account, "cluster": cluster, "user": name},
        user=name,
    )
    if assoc is None:
        return None
    rows = slurm.show(module, f"read user {name}", "user", {"name": name}, ["user", "adminlevel"])
    level = next((r["adminlevel"] for r in rows if r["user"] == name), "None")
    return dict(assoc, name=name, account=account, admin_level=level or "None")


# --- desired state and changes ----------------------------------------------------------


def desired(params, current):
    """The state asked for: the current one with every given option applied."""
    want = dict(current or {}, name=params["name"])
    if params["entity"] == "qos":
        return desired_qos(params, want)
    return desired_association(params, want)


def desired_qos(params, want):
    want.setdefault("priority", 0)
    want.setdefault("flags", [])
    want.setdefault("max_tres_per_user", {})
    want.setdefault("max_tres_per_job", {})
    want.setdefault("description", params["name"])
    if params["priority"] is not None:
        want["priority"] = params["priority"]
    if params["description"] is not None:
        want["description"] = params["description"].lower()  # sacctmgr stores descriptions in lower case
    if params["flags"] is not None:
        want["flags"] = sorted(set(params["flags"]))
    for key in ("max_tres_per_user", "max_tres_per_job"):
        if params[key] is not None:
            want[key] = slurm.normalize_tres(params[key])
    return want


def desired_association(params, want):
    entity = params["entity"]
    want.setdefault("fairshare", 1)
    want.setdefault("qos", ["normal"])
    want.setdefault("default_qos", "")
    for key in ("fairshare", "default_qos"):
        if params[key] is not None:
            want[key] = params[key]
    if params["qos"] is not None:
        want["qos"] = sorted(set(params["qos"]))
    if entity == "account":
        want.setdefault("description", params["name"].lower())
        if params["description"] is not None:
            want["description"] = params["description"].lower()  # as sacctmgr stores it
    else:
        want["account"] = params["account"]
        want.setdefault("admin_level", "None")
        if params["admin_level"] is not None:
            want["admin_level"] = params["admin_level"]
    return want


def set_args(entity, current, want):
    """sacctmgr 'set' arguments turning ``current`` (None = just created) into ``want``."""
    current = current or {}
    args = []
    if entity == "qos":
        if want["priority"] != current.get("priority", 0):
            args.append(f"priority={want['priority']}")
        if want["flags"] != current.get("flags", []):
            args.append("flags=" + (",".join(want["flags"]) or "-1"))
        for key, field in (("max_tres_per_user", "MaxTRESPerUser"), ("max_tres_per_job", "MaxTRESPerJob")):
            if want[key] != current.get(key, {}):
                args.append(f"{field}={slurm.format_tres(want[key], current.get(key, {}))}")
        if want["description"] != current.get("description", want["description"]):
            args.append(f"description={want['description']}")
        return args
    if want["fairshare"] != current.get("fairshare", 1):
        args.append(f"fairshare={want['fairshare']}")
    if want["qos"] != current.get("qos", ["normal"]):
        args.append("qos=" + ",".join(want["qos"]))
    if want["default_qos"] and want["default_qos"] != current.get("default_qos", ""):
        args.append(f"defaultqos={want['default_qos']}")
    if entity == "account" and want["description"] != current.get("description", want["description"]):
        args.append(f"description={want['description']}")
    return args


def new_entity(module):
    """What sacctmgr gives a new entity before any 'set': a user association inherits its account's QOS."""
    params = module.params
    blank = desired(dict(params, **dict.fromkeys(_SETTABLE)), None)
    if params["entity"] == "account":
        blank["description"] = desired(params, None)["description"]  # given to 'add account' already
    if params["entity"] == "user":
        parent = read_association(
            module,
            f"read account {params['account']}",
            {"account": params["account"], "cluster": params["cluster"]},
            user="",
        )
        if parent is None:
            raise slurm.SlurmError(
                f"add user {params['name']} to account {params['account']}: the account does not exist in "
                f"cluster {params['cluster']}; create it first (entity=account)"
            )
        blank.update(qos=parent["qos"], default_qos=parent["default_qos"])
    return blank


def ensure_present(module, current):
    params = module.params
    entity, name = params["entity"], params["name"]
    base = current if current is not None else new_entity(module)
    want = desired(params, base)
    changed = current is None
    if current is None:
        if entity == "qos":
            slurm.change(module, f"add qos {name}", ["add", "qos", name])
        elif entity == "account":
            slurm.change(
                module,
                f"add account {name}",
                [
                    "add",
                    "account",
                    name,
                    f"cluster={params['cluster']}",
                    f"parent={params['parent']}",
                    f"description={want['description']}",
                    f"organization={want['description']}",
                ],
            )
        else:
            slurm.change(
                module,
                f"add user {name} to account {params['account']}",
                ["add", "user", name, f"account={params['account']}", f"cluster={params['cluster']}"],
            )
    args = set_args(entity, base, want)
    if args:
        changed = True
        if entity == "qos":
            where = ["qos", "where", f"name={name}"]
        elif entity == "account":
            where = ["account", "where", f"name={name}", f"cluster={params['cluster']}"]
        else:
            where = ["user", "where", f"name={name}", f"account={params['account']}", f"cluster={params['cluster']}"]
        slurm.change(module, f"modify {entity} {name}", ["modify", *where, "set", *args])
    if entity == "user" and want["admin_level"] != base.get("admin_level", "None"):
        changed = True
        level = f"adminlevel={want['admin_level']}"
        slurm.change(module, f"modify user {name}", ["modify", "user", "where", f"name={name}", "set", level])
    return changed, want


# Options that desired() applies; cleared to compute what a freshly created entity looks like.
_SETTABLE = (
    "priority",
    "flags",
    "max_tres_per_user",
    "max_tres_per_job",
    "description",
    "fairshare",
    "qos",
    "default_qos",
    "admin_level",
)


def ensure_absent(module, current):
    params = module.params
    entity, name = params["entity"], params["name"]
    if current is None:
        return False
    if entity == "qos":
        args = ["delete", "qos", "where", f"name={name}"]
    elif entity == "account":
        args = ["delete", "account", "where", f"name={name}", f"cluster={params['cluster']}"]
    else:
        args = [
            "delete",
            "user",
            "where",
            f"name={name}",
            f"account={params['account']}",
            f"cluster={params['cluster']}",
        ]
    slurm.change(module, f"delete {entity} {name}", args)
    return True


def read(module):
    params = module.params
    if params["entity"] == "qos":
        return read_qos(module, params["name"])
    if params["entity"] == "account":
        return read_account(module, params["name"], params["cluster"])
    return read_user(module, params["name"], params["account"], params["cluster"])


def run(module):
    validate(module.params)
    current = read(module)
    if module.params["state"] == "absent":
        changed, after = ensure_absent(module, current), {}
    else:
        changed, after = ensure_present(module, current)
    result = {"changed": changed, "entity": after}
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = {"before": current or {}, "after": after}
    module.exit_json(**result)


def main():
    argument_spec = dict(
        entity=dict(type="str", required=True, choices=["qos", "account", "user"]),
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        cluster=dict(type="str"),
        account=dict(type="str"),
        parent=dict(type="str", default="root"),
        description=dict(type="str"),
        fairshare=dict(type="int"),
        qos=dict(type="list", elements="str"),
        default_qos=dict(type="str"),
        admin_level=dict(type="str", choices=["None", "Operator", "Administrator"]),
        priority=dict(type="int"),
        flags=dict(type="list", elements="str"),
        max_tres_per_user=dict(type="dict"),
        max_tres_per_job=dict(type="dict"),
        sacctmgr_path=dict(type="str", default="sacctmgr"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        run(module)
    except slurm.SlurmError as e:
        module.fail_json(msg=str(e))


if __name__ == "__main__":
    main()
