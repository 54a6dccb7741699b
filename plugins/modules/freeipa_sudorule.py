#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dataplatform maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: freeipa_sudorule
short_description: Manage a FreeIPA sudo rule that runs its commands as named users or groups, never as anyone
version_added: 0.1.0
description:
  - Makes a FreeIPA sudo rule present or absent with its description, who it applies to (FreeIPA
    users and groups, and external users such as a host's local service account), where (hosts,
    host groups or every host), which commands it allows (sudo command entries, created when
    missing), as whom they run (FreeIPA users and groups) and its sudo options.
  - Made for rules such as the Dask Gateway's, that lets the local C(dask-gateway) user start
    C(dask-gateway-jobqueue-launcher) as platform users only. The module never leaves a rule
    that runs as root. A rule must name run-as users or groups (a sudo rule without them runs as
    root), C(root) is refused as a run-as user, and a run-as user category C(all) found on the
    rule is cleared.
  - Enrolled hosts read the rule through sssd (C(sudo_provider=ipa) after ipa-client-install, or
    C(sudo_provider=ldap) on FreeIPA's compat tree C(ou=sudoers) with the C(dataplatform.dask.freeipa_enroll)
    role's O(ignore:freeipa_enroll_sudo)).
  - Why not C(community.general.ipa_sudorule)? It manages run-as only as categories (no run-as
    users or groups), has no external users, no diff mode, and verifies the server only against
    the system trust store (no CA file).
  - Why not C(freeipa.ansible_freeipa.ipasudorule) and C(ipasudocmd)? They run C(ipalib) on an
    enrolled FreeIPA client or server; this module needs only C(python-freeipa) where it runs,
    usually the controller, creates the commands it allows in the same task, and checks every
    member before it changes anything.
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
    description: Returns the rule before and after.
options:
  name:
    description: The rule's name.
    type: str
    required: true
    aliases: [cn]
  state:
    description: Whether the rule exists. Removing a rule leaves its sudo commands in FreeIPA.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: The rule's description. Not managed when omitted.
    type: str
  enabled:
    description: Whether sudo applies the rule. Not managed when omitted; a new rule is enabled.
    type: bool
  users:
    description: FreeIPA users the rule applies to. Not managed when omitted.
    type: list
    elements: str
  groups:
    description: FreeIPA user groups whose members the rule applies to. Not managed when omitted.
    type: list
    elements: str
  external_users:
    description:
      - Users FreeIPA does not know, such as a host's local service user (C(dask-gateway)); FreeIPA
        keeps them as the rule's C(externalUser). A name that is a FreeIPA user is refused (list it
        in O(users)). Not managed when omitted.
    type: list
    elements: str
  hosts:
    description:
      - Hosts (FQDNs) the rule applies on. An enrolled host becomes a member; one FreeIPA does not
        know (not enrolled yet) is kept as an external host, as C(ipa sudorule-add-host) does, so
        the rule can be made before its hosts exist. sudo matches both by name.
      - Listing hosts or host groups clears O(hostcategory=all).
      - Not managed when omitted.
    type: list
    elements: str
  hostgroups:
    description: FreeIPA host groups the rule applies on. Not managed when omitted.
    type: list
    elements: str
  hostcategory:
    description:
      - V(all) applies the rule on every host (then O(hosts) and O(hostgroups) must be empty or
        omitted); V(none) clears the category. Not managed when omitted.
    type: str
    choices: [all, none]
  commands:
    description:
      - The commands the rule allows, as absolute paths (with arguments if wanted), each a FreeIPA
        sudo command; the ones FreeIPA does not have yet are created. Not managed when omitted.
    type: list
    elements: str
  runas_users:
    description:
      - FreeIPA users the commands may run as. C(root) is refused. Not managed when omitted, but
        the rule must end up with run-as users or O(runas_groups).
    type: list
    elements: str
  runas_groups:
    description:
      - FreeIPA groups whose members the commands may run as (C(sudoRunAsUser %group)), for
        example the platform's C(dask_users). Not managed when omitted.
    type: list
    elements: str
  options:
    description: sudo options, for example C(!authenticate). Not managed when omitted.
    type: list
    elements: str
  append:
    description:
      - V(false) makes every list given exactly what is asked; V(true) only adds what is listed and
        removes nothing.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: The gateway's local user starts the launcher as platform users, never as root
  dataplatform.dask.freeipa_sudorule:
    ipa_host: ipa.example.com
    ipa_pass: "{{ vault_freeipa_admin_password }}"
    ipa_ca_cert: /etc/ipa/ca.crt
    name: dask-gateway-launcher
    description: Dask Gateway starts per-user clusters through Slurm as the user
    external_users: [dask-gateway]
    hosts: [gateway.example.com]
    commands: [/opt/dask/gateway/bin/dask-gateway-jobqueue-launcher]
    runas_groups: [dask_users]
    options: ["!authenticate"]
  delegate_to: localhost

- name: Take the rule away
  dataplatform.dask.freeipa_sudorule:
    ipa_host: ipa.example.com
    ipa_pass: "{{ vault_freeipa_admin_password }}"
    name: dask-gateway-launcher
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
sudorule:
  description: The rule after the task (as it would be, in check mode); empty when absent.
  returned: always
  type: dict
  sample:
    name: dask-gateway-launcher
    dn: ipaUniqueID=5f0c...,cn=sudorules,cn=sudo,dc=example,dc=com
    description: Dask Gateway starts per-user clusters through Slurm as the user
    enabled: true
    users: []
    groups: []
    external_users: [dask-gateway]
    hosts: [gateway.example.com]
    hostgroups: []
    hostcategory: null
    usercategory: null
    cmdcategory: null
    commands: [/opt/dask/gateway/bin/dask-gateway-jobqueue-launcher]
    runas_users: []
    runas_groups: [dask_users]
    runasusercategory: null
    options: ["!authenticate"]
created_commands:
  description: The sudo commands the task created (would create, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/opt/dask/gateway/bin/dask-gateway-jobqueue-launcher]
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

RULE_NAME = re.compile(r"^[^,=+<>#;\\\"\s][^,=+<>#;\\\"]{0,254}$")
IPA_NAME = re.compile(r"^[a-zA-Z0-9_.][a-zA-Z0-9_.-]{0,253}[a-zA-Z0-9_.$-]?$")
LOCAL_USER = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}\$?$")
FQDN = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z0-9-]{1,63}$")
ROOT_NAMES = ("root", "all", "#0")
LISTS = (
    "users",
    "groups",
    "external_users",
    "hosts",
    "hostgroups",
    "commands",
    "runas_users",
    "runas_groups",
    "options",
)


def normalize(entry):
    """FreeIPA's sudorule_show result -> the module's view of a rule (None when absent)."""
    if entry is None:
        return None
    enabled = first(entry, "ipaenabledflag", True)
    if isinstance(enabled, str):
        enabled = enabled.upper() == "TRUE"

    def values(*keys):
        return sorted(set(v for k in keys for v in entry.get(k) or []))

    return {
        "name": first(entry, "cn"),
        "dn": entry.get("dn"),
        "description": first(entry, "description"),
        "enabled": bool(enabled),
        "users": values("memberuser_user"),
        "groups": values("memberuser_group"),
        "external_users": values("externaluser"),
        "hosts": values("memberhost_host", "externalhost"),
        "hostgroups": values("memberhost_hostgroup"),
        "hostcategory": first(entry, "hostcategory"),
        "usercategory": first(entry, "usercategory"),
        "cmdcategory": first(entry, "cmdcategory"),
        "commands": values("memberallowcmd_sudocmd"),
        "runas_users": values("ipasudorunas_user", "ipasudorunasextuser"),
        "runas_groups": values("ipasudorunas_group"),
        "runasusercategory": first(entry, "ipasudorunasusercategory"),
        "options": values("ipasudoopt"),
    }


def _bad(items, pattern):
    return [i for i in items or [] if not isinstance(i, str) or not pattern.match(i)]


def validate(params):
    """Bad input fails here, before anything is read or changed."""
    name = params["name"]
    if not RULE_NAME.match(name or ""):
        raise FreeIPAModuleError(
            'invalid sudo rule name %r: 1 to 255 characters, none of , = + < > # ; \\ " and no leading space' % name
        )
    checks = (
        ("users", IPA_NAME, "user"),
        ("groups", IPA_NAME, "group"),
        ("runas_users", IPA_NAME, "run-as user"),
        ("runas_groups", IPA_NAME, "run-as group"),
        ("hostgroups", IPA_NAME, "host group"),
        ("external_users", LOCAL_USER, "external user"),
        ("hosts", FQDN, "host (a fully qualified name)"),
    )
    for key, pattern, what in checks:
        bad = _bad(params.get(key), pattern)
        if bad:
            raise FreeIPAModuleError("sudo rule %s: invalid %s %s" % (name, what, ", ".join(repr(b) for b in bad)))
    bad = [c for c in params.get("commands") or [] if not c or not c.startswith("/") or "\n" in c]
    if bad:
        raise FreeIPAModuleError(
            "sudo rule %s: commands must be absolute paths on one line, got %s"
            % (name, ", ".join(repr(b) for b in bad))
        )
    bad = [o for o in params.get("options") or [] if not o or not o.strip() or "\n" in o]
    if bad:
        raise FreeIPAModuleError("sudo rule %s: invalid sudo option %s" % (name, ", ".join(repr(b) for b in bad)))
    root = [
        u for u in (params.get("runas_users") or []) + (params.get("runas_groups") or []) if u.lower() in ROOT_NAMES
    ]
    if root:
        raise FreeIPAModuleError(
            "sudo rule %s: %s may not be a run-as user or group (the rule must never run as root)" % (name, root[0])
        )
    if params.get("hostcategory") == "all" and (params.get("hosts") or params.get("hostgroups")):
        raise FreeIPAModuleError(
            "sudo rule %s: hostcategory=all applies on every host: omit hosts and hostgroups" % name
        )


def desired_state(params, current):
    """The rule as it should be, from what is there and what is asked."""
    empty = {k: [] for k in LISTS}
    want = dict(
        current
        or dict(
            empty,
            name=params["name"],
            dn=None,
            description=None,
            enabled=True,
            hostcategory=None,
            usercategory=None,
            cmdcategory=None,
            runasusercategory=None,
        )
    )
    if params.get("description") is not None:
        want["description"] = params["description"] or None
    if params.get("enabled") is not None:
        want["enabled"] = params["enabled"]
    for key in LISTS:
        if params.get(key) is None:
            continue
        asked = list(params[key])
        if key in ("users", "groups", "hosts", "hostgroups", "runas_users", "runas_groups"):
            asked = [a.lower() for a in asked]
        add, remove = diff_members(want[key], asked, params["append"])
        want[key] = sorted((set(want[key]) | set(add)) - set(remove))
    if params.get("hostcategory") == "all" and (want["hosts"] or want["hostgroups"]):
        raise FreeIPAModuleError(
            "sudo rule %s: hostcategory=all, but the rule lists hosts %s: set hosts and hostgroups to []"
            % (params["name"], ", ".join(want["hosts"] + want["hostgroups"]))
        )
    if params.get("hostcategory") is not None:
        want["hostcategory"] = "all" if params["hostcategory"] == "all" else None
    if want["hosts"] or want["hostgroups"]:
        want["hostcategory"] = None
    want["runasusercategory"] = None  # never "run as anyone"
    if not (want["runas_users"] or want["runas_groups"]):
        raise FreeIPAModuleError(
            "sudo rule %s: set runas_users or runas_groups: a rule without them runs its commands as root"
            % params["name"]
        )
    root = [u for u in want["runas_users"] if u.lower() in ROOT_NAMES]
    if root:
        raise FreeIPAModuleError(
            "sudo rule %s: runs as %s now: list runas_users without it (append=false) to remove it"
            % (params["name"], root[0])
        )
    return want


def check_members(client, name, add):
    """Every member to add must be what it claims, before anything changes; returns the commands to create."""
    problems = []
    for kind, method, key in (
        ("users", "user_show", "user"),
        ("runas_users", "user_show", "run-as user"),
        ("groups", "group_show", "group"),
        ("runas_groups", "group_show", "run-as group"),
        ("hostgroups", "hostgroup_show", "host group"),
    ):
        for member in add[kind]:
            if (
                client.find(
                    "look up %s %s for sudo rule %s" % (key, member, name), method, member, {"no_members": True}
                )
                is None
            ):
                problems.append("no such %s: %s" % (key, member))
    for user in add["external_users"]:
        if client.find("look up user %s for sudo rule %s" % (user, name), "user_show", user, {"no_members": True}):
            problems.append("external user %s is a FreeIPA user: list it in users" % user)
    if problems:
        raise FreeIPAModuleError("sudo rule %s: %s" % (name, "; ".join(problems)))
    return [c for c in add["commands"] if client.find("look up sudo command %s" % c, "sudocmd_show", c) is None]


def attribute_options(current, want):
    """The sudorule_mod options that bring `current`'s attributes to `want`."""
    options = {}
    if want["description"] != current["description"]:
        options["description"] = want["description"] or ""
    if want["hostcategory"] != current["hostcategory"]:
        options["hostcategory"] = want["hostcategory"] or ""
    if current["runasusercategory"]:
        options["ipasudorunasusercategory"] = ""
    return options


def member_changes(current, want):
    """{list: (to_add, to_remove)} between the rule as it is and as it should be."""
    have = current or {k: [] for k in LISTS}
    return dict((k, diff_members(have[k], want[k], False)) for k in LISTS)


# (method suffix, what it changes, {FreeIPA option: module lists}) of the member calls
MEMBER_CALLS = (
    ("user", "users", {"user": ("users", "external_users"), "group": ("groups",)}),
    ("host", "hosts", {"host": ("hosts",), "hostgroup": ("hostgroups",)}),
    ("allow_command", "allowed commands", {"sudocmd": ("commands",)}),
    ("runasuser", "run-as users", {"user": ("runas_users",), "group": ("runas_groups",)}),
)


def change_members(client, name, changes, adding):
    verb = "add" if adding else "remove"
    for suffix, what, mapping in MEMBER_CALLS:
        options = {}
        for option, keys in mapping.items():
            names = [n for k in keys for n in changes[k][0 if adding else 1]]
            if names:
                options[option] = names
        if options:
            client.member_call(
                "%s %s %s sudo rule %s" % (verb, what, "to" if adding else "from", name),
                "sudorule_%s_%s" % (verb, suffix),
                [name],
                options,
            )
    for option in changes["options"][0 if adding else 1]:
        client.call(
            "%s option %s of sudo rule %s" % (verb, option, name),
            "sudorule_%s_option" % verb,
            [name],
            {"ipasudoopt": option},
        )


def ensure_present(module, client, name, current):
    params = module.params
    want = desired_state(params, current)
    changes = member_changes(current, want)
    add = dict((k, v[0]) for k, v in changes.items())
    new_commands = check_members(client, name, add)
    changed = current is None or any(a or r for a, r in changes.values())
    mod = attribute_options(current, want) if current is not None else {}
    changed = changed or bool(mod) or (current is not None and want["enabled"] != current["enabled"])
    if module.check_mode or not changed:
        return changed, want, new_commands
    if current is None:
        options = {"ipaenabledflag": want["enabled"]}
        if want["description"]:
            options["description"] = want["description"]
        if want["hostcategory"]:
            options["hostcategory"] = want["hostcategory"]
        created = client.call("add sudo rule %s" % name, "sudorule_add", [name], options)["result"]
        want["dn"] = created.get("dn")
    else:
        change_members(client, name, changes, adding=False)
        if mod:
            try:
                client.call("modify sudo rule %s" % name, "sudorule_mod", [name], mod)
            except FreeIPAModuleError as err:
                if err.code != EMPTY_MODLIST:
                    raise
        if want["enabled"] != current["enabled"]:
            method = "sudorule_enable" if want["enabled"] else "sudorule_disable"
            client.call("%s sudo rule %s" % ("enable" if want["enabled"] else "disable", name), method, [name])
    for command in new_commands:
        client.call(
            "add sudo command %s for sudo rule %s" % (command, name),
            "sudocmd_add",
            [command],
            {"description": "Allowed by sudo rule %s" % name},
        )
    change_members(client, name, changes, adding=True)
    return True, want, new_commands


def run(module):
    validate(module.params)
    name = module.params["name"]
    created = []

    def present(client, current):
        changed, want, new_commands = ensure_present(module, client, name, current)
        created.extend(new_commands)
        return changed, want

    result = manage_entry(
        module,
        "sudo rule",
        name,
        read_method="sudorule_show",
        delete_method="sudorule_del",
        normalize=normalize,
        ensure_present=present,
        result_key="sudorule",
    )
    result["created_commands"] = created
    return result


def main():
    argument_spec = freeipa_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True, aliases=["cn"]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        description=dict(type="str"),
        enabled=dict(type="bool"),
        users=dict(type="list", elements="str"),
        groups=dict(type="list", elements="str"),
        external_users=dict(type="list", elements="str"),
        hosts=dict(type="list", elements="str"),
        hostgroups=dict(type="list", elements="str"),
        hostcategory=dict(type="str", choices=["all", "none"]),
        commands=dict(type="list", elements="str"),
        runas_users=dict(type="list", elements="str"),
        runas_groups=dict(type="list", elements="str"),
        options=dict(type="list", elements="str"),
        append=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_if=freeipa_required_if(), supports_check_mode=True)
    exit_module(module, run)


if __name__ == "__main__":
    main()
