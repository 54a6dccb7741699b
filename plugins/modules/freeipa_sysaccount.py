#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dataplatform maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: freeipa_sysaccount
short_description: Manage a FreeIPA LDAP system account (cn=sysaccounts,cn=etc) for binds
version_added: 0.1.0
description:
  - Makes an LDAP system account under C(cn=sysaccounts,cn=etc) present or absent, sets its
    password when it is created, and rotates it when asked. Services such as sssd or Dask
    Gateway bind with it to read users and groups.
  - It uses the C(sysaccount_*) commands of the JSON-RPC API (FreeIPA 4.13 and later).
  - Why not upstream? C(community.general) has no module for system accounts at all, and
    C(freeipa.ansible_freeipa.ipasysaccount) runs C(ipalib) on an enrolled FreeIPA client or
    server; this one needs only C(python-freeipa) where it runs, usually the controller.
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
    description: Returns the account before and after (never the password).
options:
  name:
    description: The account's C(uid); its DN is C(uid=NAME,cn=sysaccounts,cn=etc,SUFFIX).
    type: str
    required: true
    aliases: [uid]
  state:
    description: Whether the account exists.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: The account's description. Not managed when omitted.
    type: str
  password:
    description:
      - The bind password. Required to create the account. Never logged.
      - The server never shows a password, so an existing account's password is only set again
        with O(update_password=always).
    type: str
  update_password:
    description:
      - V(on_create) sets O(password) only when the account is created.
      - V(always) sets it on every run (a rotation); the task then always reports C(changed).
    type: str
    choices: [on_create, always]
    default: on_create
  disabled:
    description: Lock (V(true)) or unlock (V(false)) the account. Not managed when omitted.
    type: bool
"""

EXAMPLES = r"""
- name: The account sssd and Dask Gateway bind with
  dataplatform.dask.freeipa_sysaccount:
    ipa_host: ipa.example.com
    ipa_pass: "{{ vault_freeipa_admin_password }}"
    ipa_ca_cert: /etc/ipa/ca.crt
    name: dask-service
    description: Dask platform bind account
    password: "{{ vault_dask_service_bind_password }}"
  delegate_to: localhost

- name: Rotate its password
  dataplatform.dask.freeipa_sysaccount:
    ipa_host: ipa.example.com
    ipa_pass: "{{ vault_freeipa_admin_password }}"
    name: dask-service
    password: "{{ vault_dask_service_bind_password_next }}"
    update_password: always
  delegate_to: localhost
"""

RETURN = r"""
sysaccount:
  description: The account after the task (as it would be, in check mode); empty when absent.
  returned: always
  type: dict
  sample:
    name: dask-service
    dn: uid=dask-service,cn=sysaccounts,cn=etc,dc=example,dc=com
    description: Dask platform bind account
    disabled: false
    has_password: true
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dataplatform.dask.plugins.module_utils.freeipa import (
    FreeIPAModuleError,
    exit_module,
    first,
    freeipa_argument_spec,
    freeipa_required_if,
    manage_entry,
)

UID = re.compile(r"^[a-zA-Z0-9_.][a-zA-Z0-9_.-]{0,253}[a-zA-Z0-9_.$-]?$")


def normalize(entry):
    if entry is None:
        return None
    return {
        "name": first(entry, "uid"),
        "dn": entry.get("dn"),
        "description": first(entry, "description"),
        "disabled": bool(entry.get("nsaccountlock", False)),
        "has_password": bool(entry.get("has_password", False)),
    }


def validate(params):
    if not UID.match(params["name"]):
        raise FreeIPAModuleError(
            "invalid system account name %r: use letters, digits, _, -, . and a final $" % params["name"]
        )
    if params["update_password"] == "always" and not params.get("password") and params["state"] == "present":  # noqa: S105
        raise FreeIPAModuleError("system account %s: update_password=always needs password" % params["name"])


def ensure_present(module, client, name, current):
    params = module.params
    if current is None:
        if not params.get("password"):
            raise FreeIPAModuleError("system account %s: password is required to create it" % name)
        options = {"userpassword": params["password"]}
        if params.get("description"):
            options["description"] = params["description"]
        if params.get("disabled"):
            options["nsaccountlock"] = True
        want = {
            "name": name,
            "dn": None,
            "description": params.get("description") or None,
            "disabled": bool(params.get("disabled")),
            "has_password": True,
        }
        if not module.check_mode:
            want = normalize(client.call("add system account %s" % name, "sysaccount_add", [name], options)["result"])
        return True, want

    want = dict(current)
    options = {}
    if params.get("description") is not None and (params["description"] or None) != current["description"]:
        options["description"] = params["description"]
        want["description"] = params["description"] or None
    if params.get("disabled") is not None and params["disabled"] != current["disabled"]:
        options["nsaccountlock"] = params["disabled"]
        want["disabled"] = params["disabled"]
    if params["update_password"] == "always" or (params.get("password") and not current["has_password"]):  # noqa: S105
        options["userpassword"] = params["password"]
        want["has_password"] = True
    if not options:
        return False, want
    if not module.check_mode:
        action = "rotate the password of system account %s" if "userpassword" in options else "modify system account %s"
        want = normalize(client.call(action % name, "sysaccount_mod", [name], options)["result"])
    return True, want


def run(module):
    validate(module.params)
    name = module.params["name"].lower()
    return manage_entry(
        module,
        "system account",
        name,
        read_method="sysaccount_show",
        delete_method="sysaccount_del",
        normalize=normalize,
        ensure_present=lambda client, current: ensure_present(module, client, name, current),
        result_key="sysaccount",
    )


def main():
    argument_spec = freeipa_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True, aliases=["uid"]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        description=dict(type="str"),
        password=dict(type="str", no_log=True),
        update_password=dict(type="str", default="on_create", choices=["on_create", "always"], no_log=False),
        disabled=dict(type="bool"),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_if=freeipa_required_if(), supports_check_mode=True)
    exit_module(module, run)


if __name__ == "__main__":
    main()
