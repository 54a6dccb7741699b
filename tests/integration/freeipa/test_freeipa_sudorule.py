"""freeipa_sudorule against the FreeIPA peer: every change four times, the compat sudoRole sssd reads
follows, bad input changes nothing."""

from __future__ import annotations

import subprocess

import pytest
from python_freeipa import exceptions as ipa_exc

LAUNCHER = "/opt/dask/gateway/bin/dask-gateway-jobqueue-launcher"


def show(ipa_client, name):
    try:
        return ipa_client._request("sudorule_show", [name], {})["result"]
    except ipa_exc.NotFound:
        return None


def compat(identity, name) -> dict:
    """The rule's sudoRole in ou=sudoers as sssd's bind account reads it: {attribute: sorted values}."""
    out = subprocess.run(
        [
            "ldapsearch",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-x",
            "-H",
            identity["ldap_uri"][0],
            "-D",
            identity["bind"]["dn"],
            "-w",
            identity["bind"]["password"],
            "-b",
            f"ou=sudoers,{identity['suffix']}",
            f"(&(objectClass=sudoRole)(cn={name}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    attrs: dict = {}
    for line in out.splitlines():
        if ": " in line and not line.startswith("dn:"):
            key, value = line.split(": ", 1)
            attrs.setdefault(key, []).append(value)
    return {k: sorted(v) for k, v in attrs.items()}


@pytest.fixture
def rule(ansible, ipa_conn, unique):
    name = f"{unique}-launcher"
    yield name
    ansible("freeipa_sudorule", {**ipa_conn, "name": name, "state": "absent"})


def test_gateway_launcher_rule_lifecycle(ansible, ipa_conn, ipa_client, identity, rule, changed_once, unique):
    host = f"{unique}.dataplatform.test"  # not enrolled: kept as an external host
    command = f"{LAUNCHER}-{unique}"
    base = {**ipa_conn, "name": rule}
    create = {
        **base,
        "description": "Dask Gateway starts clusters as the user",
        "external_users": ["dask-gateway"],
        "hosts": [host],
        "commands": [command],
        "runas_groups": ["dask_users"],
        "options": ["!authenticate"],
    }
    runs = ansible.four_times("freeipa_sudorule", create)
    changed_once(runs)
    assert runs[0]["diff"]["before"] == {}
    assert runs[0]["created_commands"] == [command] and runs[1]["created_commands"] == [command]
    assert runs[2]["created_commands"] == []
    after = runs[1]["sudorule"]
    assert after["external_users"] == ["dask-gateway"] and after["runas_groups"] == ["dask_users"]
    assert runs[0]["diff"]["after"] == {**after, "dn": None}  # check mode predicted the rule
    entry = show(ipa_client, rule)
    assert entry["externaluser"] == ["dask-gateway"] and entry["externalhost"] == [host]
    assert entry["memberallowcmd_sudocmd"] == [command] and entry["ipasudorunas_group"] == ["dask_users"]
    assert "ipasudorunasusercategory" not in entry
    assert ipa_client._request("sudocmd_show", [command], {})["result"]["sudocmd"] == [command]
    assert compat(identity, rule) == {
        "cn": [rule],
        "objectClass": ["sudoRole", "top"],
        "sudoCommand": [command],
        "sudoHost": [host],
        "sudoOption": ["!authenticate"],
        "sudoRunAsUser": ["%dask_users"],
        "sudoUser": ["dask-gateway"],
    }

    # one more run-as group and a user group, appended: the rest stays
    grow = {**base, "runas_groups": ["data_analysts"], "groups": ["admins"], "append": True}
    changed_once(ansible.four_times("freeipa_sudorule", grow))
    view = compat(identity, rule)
    assert view["sudoRunAsUser"] == ["%dask_users", "%data_analysts"]
    assert view["sudoUser"] == ["%admins", "dask-gateway"]

    # exact lists: back to one run-as group, no user group, other options
    exact = {**base, "runas_groups": ["dask_users"], "groups": [], "options": ["!authenticate", "!requiretty"]}
    runs = ansible.four_times("freeipa_sudorule", exact)
    changed_once(runs)
    assert runs[0]["diff"]["before"]["runas_groups"] == ["dask_users", "data_analysts"]
    view = compat(identity, rule)
    assert view["sudoRunAsUser"] == ["%dask_users"] and view["sudoUser"] == ["dask-gateway"]
    assert view["sudoOption"] == ["!authenticate", "!requiretty"]

    # every host, then disabled: a disabled rule leaves the compat tree
    changed_once(ansible.four_times("freeipa_sudorule", {**base, "hosts": [], "hostcategory": "all"}))
    assert compat(identity, rule)["sudoHost"] == ["ALL"]
    changed_once(ansible.four_times("freeipa_sudorule", {**base, "enabled": False}))
    assert show(ipa_client, rule)["ipaenabledflag"] == [False]
    assert compat(identity, rule) == {}
    changed_once(ansible.four_times("freeipa_sudorule", {**base, "enabled": True}))
    assert compat(identity, rule)["sudoHost"] == ["ALL"]

    # absent: the rule and its compat entry go, the sudo command stays
    changed_once(ansible.four_times("freeipa_sudorule", {**base, "state": "absent"}))
    assert show(ipa_client, rule) is None and compat(identity, rule) == {}
    assert ipa_client._request("sudocmd_show", [command], {})["result"]
    ipa_client._request("sudocmd_del", [command], {})


def test_enrolled_host_is_a_member(ansible, ipa_conn, ipa_client, identity, rule, unique):
    host = f"{unique}-enrolled.dataplatform.test"
    ipa_client._request("host_add", [host], {"force": True})
    ipa_client._request("hostgroup_add", [f"{unique}_gateways"], {})
    res = ansible(
        "freeipa_sudorule",
        {
            **ipa_conn,
            "name": rule,
            "users": ["alice"],
            "hosts": [host],
            "hostgroups": [f"{unique}_gateways"],
            "commands": ["/usr/bin/true"],
            "runas_users": ["bob"],
        },
    )
    assert res["changed"] and not res.get("failed"), res.get("msg")
    entry = show(ipa_client, rule)
    assert entry["memberhost_host"] == [host] and "externalhost" not in entry
    assert entry["memberuser_user"] == ["alice"] and entry["ipasudorunas_user"] == ["bob"]
    view = compat(identity, rule)
    assert view["sudoHost"] == sorted([f"+{unique}_gateways", host])  # a host group is a netgroup to sudo
    assert view["sudoUser"] == ["alice"] and view["sudoRunAsUser"] == ["bob"]
    res = ansible("freeipa_sudorule", {**ipa_conn, "name": rule, "hostgroups": ["no_such_hostgroup"]})
    assert res.get("failed") and "no such host group: no_such_hostgroup" in res["msg"]


def test_run_as_anyone_is_cleared(ansible, ipa_conn, ipa_client, identity, rule, changed_once):
    """A rule someone set to run as anyone is brought back to the run-as groups asked for."""
    ipa_client._request("sudorule_add", [rule], {"ipasudorunasusercategory": "all", "hostcategory": "all"})
    assert compat(identity, rule)["sudoRunAsUser"] == ["ALL"]
    runs = ansible.four_times(
        "freeipa_sudorule", {**ipa_conn, "name": rule, "commands": ["/usr/bin/true"], "runas_groups": ["dask_users"]}
    )
    changed_once(runs)
    assert runs[0]["diff"]["before"]["runasusercategory"] == "all"
    assert runs[1]["sudorule"]["runasusercategory"] is None
    assert compat(identity, rule)["sudoRunAsUser"] == ["%dask_users"]


GOOD = {
    "external_users": ["dask-gateway"],
    "hosts": ["gw.dataplatform.test"],
    "commands": ["/usr/bin/true"],
    "runas_groups": ["dask_users"],
}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"runas_users": ["root"]}, "root may not be a run-as user or group"),
        ({"runas_groups": [], "runas_users": []}, "a rule without them runs its commands as root"),
        ({"runas_groups": ["no_such_group"]}, "no such run-as group: no_such_group"),
        ({"users": ["nobody_here"]}, "no such user: nobody_here"),
        ({"external_users": ["alice"]}, "external user alice is a FreeIPA user"),
        ({"commands": ["bin/true"]}, "commands must be absolute paths"),
        ({"hostcategory": "all"}, "hostcategory=all applies on every host"),
        ({"hosts": ["not_a_fqdn"]}, "invalid host"),
        ({"name": "bad,name"}, "invalid sudo rule name"),
    ],
    ids=[
        "runas-root",
        "no-runas",
        "unknown-runas-group",
        "unknown-user",
        "external-is-ipa",
        "relative",
        "hostcat",
        "fqdn",
        "name",
    ],
)
@pytest.mark.parametrize("check", [True, False], ids=["check", "apply"])
def test_bad_input_changes_nothing(ansible, ipa_conn, ipa_client, identity, rule, args, message, check):
    """An existing rule keeps what it has whatever bad input a task brings, exact mode included."""
    assert ansible("freeipa_sudorule", {**ipa_conn, "name": rule, **GOOD})["changed"]
    before, before_compat = show(ipa_client, rule), compat(identity, rule)
    res = ansible(
        "freeipa_sudorule", {**ipa_conn, "name": rule, **GOOD, "runas_groups": ["data_analysts"], **args}, check=check
    )
    assert res.get("failed"), res
    assert message in res["msg"]
    assert show(ipa_client, rule) == before and compat(identity, rule) == before_compat


def test_a_new_rule_without_run_as_is_refused(ansible, ipa_conn, ipa_client, rule):
    res = ansible("freeipa_sudorule", {**ipa_conn, "name": rule, "commands": ["/usr/bin/true"], "hostcategory": "all"})
    assert res.get("failed") and "runs its commands as root" in res["msg"]
    assert show(ipa_client, rule) is None
