"""freeipa_sudorule's small functions: validation before anything changes, state arithmetic, and the
calls it makes, in order, on a recording client (the integration tests run it against the peer)."""

from __future__ import annotations

import pytest

from ansible_collections.dataplatform.dask.plugins.module_utils.freeipa import NOT_FOUND, FreeIPAModuleError
from ansible_collections.dataplatform.dask.plugins.modules import freeipa_sudorule as m

PARAMS = {
    "name": "dask-gateway-launcher",
    "state": "present",
    "description": None,
    "enabled": None,
    "users": None,
    "groups": None,
    "external_users": ["dask-gateway"],
    "hosts": ["gw.example.com"],
    "hostgroups": None,
    "hostcategory": None,
    "commands": ["/opt/dask/gateway/bin/dask-gateway-jobqueue-launcher"],
    "runas_users": None,
    "runas_groups": ["dask_users"],
    "options": ["!authenticate"],
    "append": False,
}

ENTRY = {
    "dn": "ipaUniqueID=1,cn=sudorules,cn=sudo,dc=example,dc=com",
    "cn": ["dask-gateway-launcher"],
    "ipaenabledflag": [True],
    "externaluser": ["dask-gateway"],
    "memberhost_host": ["gw2.example.com"],
    "externalhost": ["gw.example.com"],
    "memberallowcmd_sudocmd": ["/opt/dask/gateway/bin/dask-gateway-jobqueue-launcher"],
    "ipasudorunas_group": ["dask_users"],
    "ipasudoopt": ["!authenticate"],
}


def test_normalize_merges_members_and_external_hosts():
    rule = m.normalize(ENTRY)
    assert rule["hosts"] == ["gw.example.com", "gw2.example.com"]
    assert rule["external_users"] == ["dask-gateway"] and rule["users"] == []
    assert rule["runas_groups"] == ["dask_users"] and rule["runasusercategory"] is None
    assert rule["enabled"] is True
    assert m.normalize({**ENTRY, "ipaenabledflag": ["FALSE"]})["enabled"] is False
    assert m.normalize(None) is None


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ({"name": "a,b"}, "invalid sudo rule name"),
        ({"name": " lead"}, "invalid sudo rule name"),
        ({"runas_users": ["root"]}, "root may not be a run-as user"),
        ({"runas_users": ["ALL"]}, "ALL may not be a run-as user"),
        ({"runas_groups": ["all"]}, "all may not be a run-as user or group"),
        ({"commands": ["relative/path"]}, "commands must be absolute paths"),
        ({"commands": ["/bin/a\n/bin/b"]}, "commands must be absolute paths"),
        ({"options": [" "]}, "invalid sudo option"),
        ({"hosts": ["gateway"]}, "invalid host (a fully qualified name) 'gateway'"),
        ({"external_users": ["%group"]}, "invalid external user '%group'"),
        ({"users": ["no spaces"]}, "invalid user 'no spaces'"),
        ({"hostcategory": "all"}, "hostcategory=all applies on every host"),
    ],
)
def test_bad_input_fails_first(asked, message):
    with pytest.raises(FreeIPAModuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        m.validate({**PARAMS, **asked})


def test_good_input_passes():
    m.validate(PARAMS)
    m.validate({**PARAMS, "hosts": [], "hostcategory": "all"})


def test_desired_state_of_a_new_rule():
    want = m.desired_state(PARAMS, None)
    assert want["hosts"] == ["gw.example.com"] and want["runas_groups"] == ["dask_users"]
    assert want["enabled"] is True and want["hostcategory"] is None and want["runasusercategory"] is None


def test_a_rule_must_run_as_someone():
    with pytest.raises(FreeIPAModuleError, match="runs its commands as root"):
        m.desired_state({**PARAMS, "runas_groups": None}, None)
    current = m.normalize(ENTRY)
    with pytest.raises(FreeIPAModuleError, match="runs its commands as root"):
        m.desired_state({**PARAMS, "runas_groups": []}, current)


def test_root_already_there_must_go():
    current = m.normalize({**ENTRY, "ipasudorunasextuser": ["root"]})
    with pytest.raises(FreeIPAModuleError, match="runs as root now"):
        m.desired_state({**PARAMS, "runas_users": None}, current)
    want = m.desired_state({**PARAMS, "runas_users": []}, current)
    assert want["runas_users"] == []


def test_run_as_anyone_is_always_cleared():
    current = m.normalize({**ENTRY, "ipasudorunasusercategory": ["all"]})
    want = m.desired_state(PARAMS, current)
    assert want["runasusercategory"] is None
    assert m.attribute_options(current, want) == {"ipasudorunasusercategory": ""}


def test_hosts_and_category():
    current = m.normalize({**ENTRY, "memberhost_host": [], "externalhost": [], "hostcategory": ["all"]})
    want = m.desired_state(PARAMS, current)  # listing hosts clears "all"
    assert want["hostcategory"] is None and m.attribute_options(current, want) == {"hostcategory": ""}
    with pytest.raises(FreeIPAModuleError, match="set hosts and hostgroups to"):
        m.desired_state({**PARAMS, "hosts": None, "hostcategory": "all"}, m.normalize(ENTRY))


def test_append_adds_and_exact_removes():
    current = m.normalize(ENTRY)
    appended = m.desired_state({**PARAMS, "hosts": ["GW3.example.com"], "append": True}, current)
    assert appended["hosts"] == ["gw.example.com", "gw2.example.com", "gw3.example.com"]
    exact = m.desired_state(PARAMS, current)
    changes = m.member_changes(current, exact)
    assert changes["hosts"] == ([], ["gw2.example.com"])
    assert all(changes[k] == ([], []) for k in m.LISTS if k != "hosts")


class Recorder:
    """A FreeIPAClient stand-in that answers lookups from `known` and records every call."""

    def __init__(self, known):
        self.known, self.calls = known, []

    def find(self, action, method, key, options=None):
        return {"dn": key} if (method, key) in self.known else None

    def call(self, action, method, args=None, options=None):
        self.calls.append((method, args, options))
        if method == "sudorule_show":
            raise FreeIPAModuleError(action, code=NOT_FOUND)
        return {"result": {"dn": "ipaUniqueID=new"}}

    member_call = call


class Module:
    def __init__(self, params, check_mode=False):
        self.params, self.check_mode = params, check_mode


KNOWN = {("group_show", "dask_users")}


@pytest.mark.parametrize("check_mode", [True, False])
def test_new_rule_calls_in_order(check_mode):
    client = Recorder(KNOWN)
    changed, want, created = m.ensure_present(Module(PARAMS, check_mode), client, PARAMS["name"], None)
    assert changed and created == PARAMS["commands"]
    assert want["external_users"] == ["dask-gateway"]
    methods = [c[0] for c in client.calls]
    if check_mode:
        assert methods == []
        return
    assert methods == [
        "sudorule_add",
        "sudocmd_add",
        "sudorule_add_user",
        "sudorule_add_host",
        "sudorule_add_allow_command",
        "sudorule_add_runasuser",
        "sudorule_add_option",
    ]
    assert client.calls[2][2] == {"user": ["dask-gateway"]}
    assert client.calls[5][2] == {"group": ["dask_users"]}


def test_removals_before_the_category_before_additions():
    """FreeIPA refuses hosts while hostcategory=all and 'all' while hosts are listed: order matters."""
    current = m.normalize({**ENTRY, "memberhost_host": [], "externalhost": [], "hostcategory": ["all"]})
    client = Recorder(KNOWN | {("sudocmd_show", PARAMS["commands"][0])})
    params = {**PARAMS, "runas_groups": ["data_analysts"]}
    client.known.add(("group_show", "data_analysts"))
    m.ensure_present(Module(params), client, params["name"], current)
    methods = [c[0] for c in client.calls]
    assert methods == ["sudorule_remove_runasuser", "sudorule_mod", "sudorule_add_host", "sudorule_add_runasuser"]
    assert client.calls[1][2] == {"hostcategory": ""}


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ({"runas_groups": ["ghosts"]}, "no such run-as group: ghosts"),
        ({"users": ["nobody"]}, "no such user: nobody"),
        ({"hostgroups": ["nowhere"]}, "no such host group: nowhere"),
    ],
)
def test_unknown_members_fail_before_any_write(asked, message):
    client = Recorder(KNOWN)
    with pytest.raises(FreeIPAModuleError, match=message):
        m.ensure_present(Module({**PARAMS, **asked}), client, PARAMS["name"], m.normalize(ENTRY))
    assert client.calls == []


def test_an_ipa_user_is_not_an_external_user():
    client = Recorder(KNOWN | {("user_show", "dask-gateway")})
    with pytest.raises(FreeIPAModuleError, match="is a FreeIPA user: list it in users"):
        m.ensure_present(Module(PARAMS), client, PARAMS["name"], None)
    assert client.calls == []
