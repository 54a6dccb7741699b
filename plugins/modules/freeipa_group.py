#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dataplatform maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: freeipa_group
short_description: Manage a FreeIPA user group and its members over the JSON-RPC API
version_added: 0.1.0
description:
  - Makes a FreeIPA group present or absent, with its description, POSIX or non-POSIX kind and
    its user and group members (exactly the ones listed, or adding to what is there).
  - Why not C(community.general.ipa_group)? It has no diff mode; it verifies the server only
    against the system trust store (no CA file such as C(/etc/ipa/ca.crt)); with exact
    membership it removes members before it finds out that one to add does not exist, so bad
    input leaves a half-changed group, and in check mode an unknown member still reads as
    C(changed). This module checks every member first and changes nothing on bad input.
  - Why not C(freeipa.ansible_freeipa.ipagroup)? It runs C(ipalib) on an enrolled FreeIPA
    client or server; this one needs only C(python-freeipa) where it runs, usually the
    controller.
author:
  - dataplatform maintainers (@dataplatform)
extends_documentation_fragment:
  - dataplatform.dask.freeipa
attributes:
  check_mode:
    support: full
    description: Runs the same reads and comparisons; only the writes are skipped.
  diff_mode:
    support: full
    description: Returns the group before and after.
options:
  name:
    description:
      - The group name. FreeIPA stores it in lower case; letters, digits, C(_), C(-), C(.)
        and a final C($).
    type: str
    required: true
    aliases: [cn]
  state:
    description: Whether the group exists.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: The group's description. Not managed when omitted.
    type: str
  posix:
    description:
      - V(true) makes a POSIX group (with a GID, what sssd resolves), V(false) a non-POSIX one.
      - A non-POSIX group can be turned into a POSIX one; FreeIPA cannot do the reverse, and the
        module fails before changing anything if asked to.
      - Not managed on an existing group when omitted; a new group is POSIX.
    type: bool
  gid:
    description: The GID of a POSIX group. FreeIPA picks one when omitted.
    type: int
  users:
    description:
      - User members (login names). Not managed when omitted; V([]) with O(append=false)
        removes every user member.
    type: list
    elements: str
  groups:
    description:
      - Group members (nested groups). Not managed when omitted; V([]) with O(append=false)
        removes every group member.
    type: list
    elements: str
  append:
    description:
      - V(false) makes the members exactly O(users) and O(groups); V(true) only adds the ones
        listed and removes none.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: The platform's parent group holds the team groups
  dataplatform.dask.freeipa_group:
    ipa_host: ipa.example.com
    ipa_pass: "{{ vault_freeipa_admin_password }}"
    ipa_ca_cert: /etc/ipa/ca.crt
    name: dask_users
    description: Admitted to the Dask platform
    groups: [data_engineers, data_analysts, admins]
  delegate_to: localhost

- name: Add alice to data_engineers, keeping the other members
  dataplatform.dask.freeipa_group:
    ipa_host: ipa.example.com
    ipa_pass: "{{ vault_freeipa_admin_password }}"
    name: data_engineers
    users: [alice]
    append: true
  delegate_to: localhost
"""

RETURN = r"""
group:
  description: The group as it is after the task (as it would be, in check mode); empty when absent.
  returned: always
  type: dict
  sample:
    name: data_engineers
    dn: cn=data_engineers,cn=groups,cn=accounts,dc=example,dc=com
    description: Data engineers
    posix: true
    gid: 2001
    users: [alice]
    groups: []
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dataplatform.dask.plugins.module_utils.freeipa import (
    EMPTY_MODLIST,
    FreeIPAModuleError,
    diff_members,
    exit_module,
    first,
    freeipa_argument_spec,
    freeipa_required_if,
    manage_entry,
)

GROUP_NAME = re.compile(r"^[a-zA-Z0-9_.][a-zA-Z0-9_.-]{0,253}[a-zA-Z0-9_.$-]?$")


def normalize(entry):
    """FreeIPA's group_show result -> the module's view of a group (None when absent)."""
    if entry is None:
        return None
    gid = first(entry, "gidnumber")
    return {
        "name": first(entry, "cn"),
        "dn": entry.get("dn"),
        "description": first(entry, "description"),
        "posix": gid is not None,
        "gid": int(gid) if gid is not None else None,
        "users": sorted(entry.get("member_user", [])),
        "groups": sorted(entry.get("member_group", [])),
    }


def validate(params):
    """Bad input fails here, before anything is read or changed."""
    name = params["name"]
    if not GROUP_NAME.match(name):
        raise FreeIPAModuleError(
            "invalid group name %r: use letters, digits, _, -, . and a final $ (at most 255 characters)" % name
        )
    for kind in ("users", "groups"):
        bad = [m for m in params.get(kind) or [] if not m or not GROUP_NAME.match(m)]
        if bad:
            raise FreeIPAModuleError("group %s: invalid %s %s" % (name, kind[:-1], ", ".join(repr(b) for b in bad)))
    if params.get("posix") is False and params.get("gid") is not None:
        raise FreeIPAModuleError("group %s: gid needs posix=true" % name)


def check_members_exist(client, name, users, groups):
    """Every member to add must exist: FreeIPA would only report it afterwards, in `failed`."""
    missing = []
    for user in users:
        if client.find("look up user %s for group %s" % (user, name), "user_show", user, {"no_members": True}) is None:
            missing.append("user %s" % user)
    for group in groups:
        if (
            client.find("look up group %s for group %s" % (group, name), "group_show", group, {"no_members": True})
            is None
        ):
            missing.append("group %s" % group)
    if missing:
        raise FreeIPAModuleError("group %s: no such member: %s" % (name, ", ".join(missing)))


def desired_state(params, current):
    """The group as it should be, from what is there and what is asked."""
    want = dict(
        current
        or {
            "name": params["name"].lower(),
            "dn": None,
            "description": None,
            "posix": True,
            "gid": None,
            "users": [],
            "groups": [],
        }
    )
    if params.get("description") is not None:
        want["description"] = params["description"] or None
    if params.get("posix") is not None:
        want["posix"] = params["posix"]
    if params.get("gid") is not None:
        want["gid"] = params["gid"]
    for kind in ("users", "groups"):
        if params.get(kind) is not None:
            asked = [m.lower() for m in params[kind]]
            add, remove = diff_members(want[kind], asked, params["append"])
            want[kind] = sorted((set(want[kind]) | set(add)) - set(remove))
    return want


def attribute_options(current, want):
    """The group_add (current is None) or group_mod options that make `current` into `want`."""
    if current is None:
        options = {"nonposix": not want["posix"]}
        if want["description"]:
            options["description"] = want["description"]
        if want["gid"] is not None:
            options["gidnumber"] = want["gid"]
        return options
    options = {}
    if want["description"] != current["description"]:
        options["description"] = want["description"] or ""
    if want["posix"] and not current["posix"]:
        options["posix"] = True
    if want["posix"] and want["gid"] is not None and want["gid"] != current["gid"]:
        options["gidnumber"] = want["gid"]
    return options


def ensure_attributes(module, client, name, current, want):
    """Create the group or bring its description and POSIX kind in line; True if anything changes."""
    options = attribute_options(current, want)
    if current is not None and not options:
        return False
    if module.check_mode:
        return True
    if current is None:
        created = normalize(client.call("add group %s" % name, "group_add", [name], options)["result"])
        want["gid"], want["dn"] = created["gid"], created["dn"]
        return True
    try:
        updated = client.call("modify group %s" % name, "group_mod", [name], options)["result"]
        want["gid"] = normalize(updated)["gid"]
    except FreeIPAModuleError as err:
        if err.code != EMPTY_MODLIST:
            raise
    return True


def ensure_present(module, client, name, current):
    params = module.params
    if current and current["posix"] and params.get("posix") is False:
        raise FreeIPAModuleError("group %s: is a POSIX group and FreeIPA cannot make it non-POSIX" % name)
    want = desired_state(params, current)
    have_users = current["users"] if current else []
    have_groups = current["groups"] if current else []
    add_users, remove_users = diff_members(have_users, want["users"], False)
    add_groups, remove_groups = diff_members(have_groups, want["groups"], False)
    check_members_exist(client, name, add_users, [g for g in add_groups if g != name])
    if name in add_groups:
        raise FreeIPAModuleError("group %s: a group cannot be a member of itself" % name)

    changed = ensure_attributes(module, client, name, current, want)
    if add_users or add_groups:
        changed = True
        if not module.check_mode:
            client.member_call(
                "add members to group %s" % name, "group_add_member", [name], {"user": add_users, "group": add_groups}
            )
    if remove_users or remove_groups:
        changed = True
        if not module.check_mode:
            client.member_call(
                "remove members from group %s" % name,
                "group_remove_member",
                [name],
                {"user": remove_users, "group": remove_groups},
            )
    if want["posix"] is False:
        want["gid"] = None
    return changed, want


def run(module):
    validate(module.params)
    name = module.params["name"].lower()
    return manage_entry(
        module,
        "group",
        name,
        read_method="group_show",
        delete_method="group_del",
        normalize=normalize,
        ensure_present=lambda client, current: ensure_present(module, client, name, current),
        result_key="group",
    )


def main():
    argument_spec = freeipa_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True, aliases=["cn"]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        description=dict(type="str"),
        posix=dict(type="bool"),
        gid=dict(type="int"),
        users=dict(type="list", elements="str"),
        groups=dict(type="list", elements="str"),
        append=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=freeipa_required_if(),
        supports_check_mode=True,
    )
    exit_module(module, run)


if __name__ == "__main__":
    main()
