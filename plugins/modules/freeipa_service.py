#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dataplatform maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: freeipa_service
short_description: Manage a FreeIPA Kerberos service principal such as HTTP/gateway.example.com
version_added: 0.1.0
description:
  - Makes a Kerberos service principal (C(SERVICE/host.fqdn)) present or absent in FreeIPA,
    bound to its host, and manages which other hosts may manage it (fetch its keytab).
  - The keytab itself is fetched on the host by the C(dataplatform.dask.freeipa_enroll) role.
  - Why not C(community.general.ipa_service)? It has no diff mode, verifies the server only
    against the system trust store (no CA file), cannot create the service before its host is
    enrolled (no C(skip_host_check)), and reports an unknown host only after it changed the
    others. This module checks the hosts first and changes nothing on bad input.
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
    description: Returns the service before and after.
options:
  principal:
    description:
      - The principal, C(SERVICE/host.fqdn) with or without C(@REALM).
    type: str
    required: true
    aliases: [name]
  state:
    description: Whether the principal exists.
    type: str
    choices: [present, absent]
    default: present
  hosts:
    description:
      - Other hosts allowed to manage the service (for example every gateway instance behind a
        load balancer). The principal's own host always manages it and is never removed.
      - Not managed when omitted.
    type: list
    elements: str
  append:
    description: V(false) makes the managing hosts exactly O(hosts); V(true) only adds.
    type: bool
    default: false
  skip_host_check:
    description:
      - Create the service even if its host is not enrolled yet (FreeIPA's C(skip_host_check)).
        Used when the identity playbook runs before the gateway host exists.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: The gateway's HTTP principal, before the gateway host is enrolled
  dataplatform.dask.freeipa_service:
    ipa_host: ipa.example.com
    ipa_pass: "{{ vault_freeipa_admin_password }}"
    ipa_ca_cert: /etc/ipa/ca.crt
    principal: HTTP/gateway.example.com
    skip_host_check: true
  delegate_to: localhost
"""

RETURN = r"""
service:
  description: The service after the task (as it would be, in check mode); empty when absent.
  returned: always
  type: dict
  sample:
    principal: HTTP/gateway.example.com@EXAMPLE.COM
    dn: krbprincipalname=HTTP/gateway.example.com@EXAMPLE.COM,cn=services,cn=accounts,dc=example,dc=com
    hosts: [gateway.example.com]
    has_keytab: false
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dataplatform.dask.plugins.module_utils.freeipa import (
    FreeIPAModuleError,
    diff_members,
    exit_module,
    first,
    freeipa_argument_spec,
    freeipa_required_if,
    manage_entry,
)

PRINCIPAL = re.compile(r"^(?P<service>[A-Za-z0-9_.-]+)/(?P<host>[A-Za-z0-9.-]+)(@(?P<realm>[A-Z0-9.-]+))?$")


def normalize(entry):
    if entry is None:
        return None
    return {
        "principal": first(entry, "krbcanonicalname") or first(entry, "krbprincipalname"),
        "dn": entry.get("dn"),
        "hosts": sorted(entry.get("managedby_host", [])),
        "has_keytab": bool(entry.get("has_keytab", False)),
    }


def parse(principal):
    m = PRINCIPAL.match(principal or "")
    if not m:
        raise FreeIPAModuleError("invalid service principal %r: expected SERVICE/host.fqdn[@REALM]" % principal)
    return m.group("service"), m.group("host").lower()


def ensure_present(module, client, principal, own_host, current):
    params = module.params
    changed = False
    if current is None:
        if (
            not params["skip_host_check"]
            and client.find("look up host %s for service %s" % (own_host, principal), "host_show", own_host) is None
        ):
            raise FreeIPAModuleError(
                "add service %s: host %s is not enrolled in FreeIPA (enroll it first or set skip_host_check)"
                % (principal, own_host)
            )
        current_hosts = [own_host] if not params["skip_host_check"] else []
        want = {"principal": principal, "dn": None, "hosts": current_hosts, "has_keytab": False}
    else:
        want = dict(current)
    to_add, to_remove = [], []
    if params.get("hosts") is not None:
        asked = sorted(set(h.lower() for h in params["hosts"]) | ({own_host} & set(want["hosts"])))
        to_add, to_remove = diff_members(want["hosts"], asked, params["append"])
        to_remove = [h for h in to_remove if h != own_host]
        for host in to_add:
            if client.find("look up host %s for service %s" % (host, principal), "host_show", host) is None:
                raise FreeIPAModuleError("service %s: no such host: %s" % (principal, host))
        want["hosts"] = sorted((set(want["hosts"]) | set(to_add)) - set(to_remove))
    if current is None:
        changed = True
        if not module.check_mode:
            created = client.call(
                "add service %s" % principal,
                "service_add",
                [principal],
                {"skip_host_check": params["skip_host_check"], "force": params["skip_host_check"]},
            )
            want["principal"], want["dn"] = normalize(created["result"])["principal"], created["result"]["dn"]
    if to_add:
        changed = True
        if not module.check_mode:
            client.member_call(
                "add managing hosts to service %s" % principal, "service_add_host", [principal], {"host": to_add}
            )
    if to_remove:
        changed = True
        if not module.check_mode:
            client.member_call(
                "remove managing hosts from service %s" % principal,
                "service_remove_host",
                [principal],
                {"host": to_remove},
            )
    return changed, want


def run(module):
    principal = module.params["principal"]
    _service, own_host = parse(principal)
    return manage_entry(
        module,
        "service",
        principal,
        read_method="service_show",
        delete_method="service_del",
        normalize=normalize,
        ensure_present=lambda client, current: ensure_present(module, client, principal, own_host, current),
        result_key="service",
    )


def main():
    argument_spec = freeipa_argument_spec()
    argument_spec.update(
        principal=dict(type="str", required=True, aliases=["name"]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        hosts=dict(type="list", elements="str"),
        append=dict(type="bool", default=False),
        skip_host_check=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_if=freeipa_required_if(), supports_check_mode=True)
    exit_module(module, run)


if __name__ == "__main__":
    main()
