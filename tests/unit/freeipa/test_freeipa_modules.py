"""The modules' small functions: validation before anything changes, state arithmetic."""

from __future__ import annotations

import pytest

from ansible_collections.dataplatform.dask.plugins.module_utils.freeipa import FreeIPAModuleError
from ansible_collections.dataplatform.dask.plugins.modules import freeipa_group, freeipa_service, freeipa_sysaccount

GROUP = {
    "name": "team",
    "description": None,
    "posix": None,
    "gid": None,
    "users": None,
    "groups": None,
    "append": False,
    "state": "present",
}


@pytest.mark.parametrize("name", ["bad name", "", "-starts-with-dash", "a" * 300, "semi;colon", "x$y"])
def test_invalid_group_names_fail_first(name):
    with pytest.raises(FreeIPAModuleError, match="invalid group name"):
        freeipa_group.validate({**GROUP, "name": name})


@pytest.mark.parametrize("name", ["data_engineers", "admins", "a", "svc$", "team.a-1"])
def test_valid_group_names(name):
    freeipa_group.validate({**GROUP, "name": name})


def test_invalid_member_names_fail_first():
    with pytest.raises(FreeIPAModuleError, match="invalid user 'no spaces'"):
        freeipa_group.validate({**GROUP, "users": ["alice", "no spaces"]})


def test_gid_needs_posix():
    with pytest.raises(FreeIPAModuleError, match="gid needs posix=true"):
        freeipa_group.validate({**GROUP, "posix": False, "gid": 5})


CURRENT = {
    "name": "team",
    "dn": "cn=team",
    "description": "d",
    "posix": True,
    "gid": 7,
    "users": ["alice", "bob"],
    "groups": ["sub"],
}


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ({}, CURRENT),
        ({"users": ["carol"]}, {**CURRENT, "users": ["carol"]}),
        ({"users": ["Carol"], "append": True}, {**CURRENT, "users": ["alice", "bob", "carol"]}),
        ({"groups": []}, {**CURRENT, "groups": []}),
        ({"description": "new"}, {**CURRENT, "description": "new"}),
        ({"description": ""}, {**CURRENT, "description": None}),
    ],
)
def test_desired_state(asked, expected):
    assert freeipa_group.desired_state({**GROUP, **asked}, CURRENT) == expected


def test_desired_state_of_a_new_group_is_posix():
    want = freeipa_group.desired_state({**GROUP, "name": "New", "users": ["alice"]}, None)
    assert want["name"] == "new" and want["posix"] is True and want["users"] == ["alice"]


def test_normalize_group():
    entry = {"dn": "cn=g,x", "cn": ["g"], "gidnumber": ["12"], "member_user": ["b", "a"], "description": ["D"]}
    assert freeipa_group.normalize(entry) == {
        "name": "g",
        "dn": "cn=g,x",
        "description": "D",
        "posix": True,
        "gid": 12,
        "users": ["a", "b"],
        "groups": [],
    }
    assert freeipa_group.normalize({"dn": "cn=g", "cn": ["g"]})["posix"] is False
    assert freeipa_group.normalize(None) is None


@pytest.mark.parametrize("principal", ["HTTP", "HTTP/", "/host", "HTTP/host/extra", "HTTP/host@lower.realm", ""])
def test_invalid_principals(principal):
    with pytest.raises(FreeIPAModuleError, match="invalid service principal"):
        freeipa_service.parse(principal)


def test_principal_parts():
    assert freeipa_service.parse("HTTP/Gateway.Example.com@EXAMPLE.COM") == ("HTTP", "gateway.example.com")
    assert freeipa_service.parse("HTTP/gw.example.com") == ("HTTP", "gw.example.com")


def test_sysaccount_rotation_needs_a_password():
    with pytest.raises(FreeIPAModuleError, match="update_password=always needs password"):
        freeipa_sysaccount.validate({"name": "svc", "update_password": "always", "password": None, "state": "present"})


def test_sysaccount_name_is_validated():
    with pytest.raises(FreeIPAModuleError, match="invalid system account name"):
        freeipa_sysaccount.validate(
            {"name": "bad name", "update_password": "on_create", "password": "x", "state": "present"}
        )


def test_sysaccount_view_never_has_the_password():
    view = freeipa_sysaccount.normalize({"dn": "uid=s", "uid": ["s"], "has_password": True, "nsaccountlock": False})
    assert view == {"name": "s", "dn": "uid=s", "description": None, "disabled": False, "has_password": True}
