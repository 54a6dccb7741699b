"""freeipa_group against the FreeIPA peer: every change four times, bad input changes nothing."""

from __future__ import annotations

import subprocess

import pytest
from python_freeipa import exceptions as ipa_exc


def show(ipa_client, name):
    try:
        return ipa_client.group_show(name)["result"]
    except ipa_exc.NotFound:
        return None


def test_group_lifecycle(ansible, ipa_conn, ipa_client, unique, changed_once):
    name = f"{unique}_team"
    base = {**ipa_conn, "name": name}

    # create, with a description and exact members
    create = {**base, "description": "A team", "users": ["alice", "bob"], "groups": ["data_engineers"]}
    runs = ansible.four_times("freeipa_group", create)
    changed_once(runs)
    assert runs[0]["diff"]["before"] == {}
    assert runs[0]["diff"]["after"]["users"] == ["alice", "bob"]
    assert runs[1]["group"]["posix"] is True and runs[1]["group"]["gid"]
    group = show(ipa_client, name)
    assert group["member_user"] == ["alice", "bob"] and group["member_group"] == ["data_engineers"]
    assert group["description"] == ["A team"]

    # change the description only: members untouched
    changed_once(ansible.four_times("freeipa_group", {**base, "description": "The team"}))
    assert show(ipa_client, name)["description"] == ["The team"]
    assert show(ipa_client, name)["member_user"] == ["alice", "bob"]

    # append a user: the others stay
    changed_once(ansible.four_times("freeipa_group", {**base, "users": ["carol"], "append": True}))
    assert show(ipa_client, name)["member_user"] == ["alice", "bob", "carol"]

    # exact users: bob and carol go, the group member stays (groups not given)
    runs = ansible.four_times("freeipa_group", {**base, "users": ["alice"]})
    changed_once(runs)
    assert runs[0]["diff"]["before"]["users"] == ["alice", "bob", "carol"]
    assert runs[0]["diff"]["after"]["users"] == ["alice"]
    group = show(ipa_client, name)
    assert group["member_user"] == ["alice"] and group["member_group"] == ["data_engineers"]

    # exact empty groups: removes the nested group
    changed_once(ansible.four_times("freeipa_group", {**base, "groups": []}))
    assert "member_group" not in show(ipa_client, name)

    # absent
    changed_once(ansible.four_times("freeipa_group", {**base, "state": "absent"}))
    assert show(ipa_client, name) is None


def test_nonposix_to_posix(ansible, ipa_conn, ipa_client, unique, changed_once):
    base = {**ipa_conn, "name": f"{unique}_np"}
    changed_once(ansible.four_times("freeipa_group", {**base, "posix": False}))
    assert "gidnumber" not in show(ipa_client, base["name"])
    changed_once(ansible.four_times("freeipa_group", {**base, "posix": True, "gid": 424242}))
    assert show(ipa_client, base["name"])["gidnumber"] == ["424242"]
    # FreeIPA cannot go back: a clear refusal, nothing changed
    res = ansible("freeipa_group", {**base, "posix": False})
    assert res["failed"] and "cannot make it non-POSIX" in res["msg"]
    assert show(ipa_client, base["name"])["gidnumber"] == ["424242"]
    ansible("freeipa_group", {**base, "state": "absent"})


def test_nested_membership_is_what_ldap_shows(ansible, ipa_conn, identity, unique):
    """A group made through the API is what LDAP clients (and sssd) see, memberOf included."""
    parent, child = f"{unique}_parent", f"{unique}_child"
    assert not ansible("freeipa_group", {**ipa_conn, "name": child, "users": ["carol"]}).get("failed")
    assert not ansible("freeipa_group", {**ipa_conn, "name": parent, "groups": [child]}).get("failed")
    out = subprocess.run(
        [
            "ldapsearch",
            "-LLL",
            "-x",
            "-H",
            identity["ldap_uri"][0],
            "-D",
            identity["bind"]["dn"],
            "-w",
            identity["bind"]["password"],
            "-b",
            f"cn=users,cn=accounts,{identity['suffix']}",
            "(uid=carol)",
            "memberOf",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert f"cn={child},cn=groups" in out
    assert f"cn={parent},cn=groups" in out  # nested: memberOf is transitive, as on FreeIPA
    for name in (parent, child):
        ansible("freeipa_group", {**ipa_conn, "name": name, "state": "absent"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"name": "bad name!"}, "invalid group name"),
        ({"users": ["alice", "nobody_here"]}, "no such member: user nobody_here"),
        ({"groups": ["no_such_group"]}, "no such member: group no_such_group"),
        ({"ipa_pass": "wrong-password"}, "wrong user name or password"),
        ({"ipa_host": "127.0.0.1:9"}, "cannot reach FreeIPA at https://127.0.0.1:9/ipa"),
    ],
    ids=["invalid-name", "unknown-user", "unknown-group", "wrong-password", "unreachable"],
)
@pytest.mark.parametrize("check", [True, False], ids=["check", "apply"])
def test_bad_input_changes_nothing(ansible, ipa_conn, ipa_client, args, message, check):
    """data_engineers keeps its members whatever bad input a task brings, exact mode included."""
    before = show(ipa_client, "data_engineers")
    res = ansible("freeipa_group", {**ipa_conn, "name": "data_engineers", "users": ["carol"], **args}, check=check)
    assert res.get("failed"), res
    assert message in res["msg"]
    assert "Secret123" not in res["msg"]
    assert show(ipa_client, "data_engineers") == before


def test_ca_mismatch_is_refused(ansible, ipa_conn, ipa_client, tmp_path):
    """A server whose certificate another CA signed is not talked to, and the error says so."""
    other = tmp_path / "other-ca.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tmp_path / "k.pem"),
            "-out",
            str(other),
            "-days",
            "1",
            "-subj",
            "/CN=Some other CA",
        ],
        check=True,
        capture_output=True,
    )
    res = ansible("freeipa_group", {**ipa_conn, "ipa_ca_cert": str(other), "name": "ca_mismatch_group"})
    assert res.get("failed")
    assert "is not trusted by" in res["msg"] and str(other) in res["msg"]
    assert show(ipa_client, "ca_mismatch_group") is None


def test_non_admin_is_denied(ansible, ipa_conn, identity, ipa_client):
    res = ansible(
        "freeipa_group",
        {**ipa_conn, "ipa_user": "bob", "ipa_pass": identity["users"]["bob"]["password"], "name": "bob_made_this"},
    )
    assert res.get("failed") and "add group bob_made_this: ACIError" in res["msg"]
    assert show(ipa_client, "bob_made_this") is None
