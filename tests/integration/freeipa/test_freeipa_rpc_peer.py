"""The FreeIPA JSON-RPC peer answers like the real server on what the collection relies on."""

from __future__ import annotations

import pytest
import requests


@pytest.fixture
def base(identity) -> str:
    return f"https://{identity['host']}/ipa"


@pytest.fixture
def session(identity, base) -> requests.Session:
    s = requests.Session()
    s.verify = identity["ca"]
    s.trust_env = False  # REQUESTS_CA_BUNDLE would win over s.verify
    r = s.post(
        f"{base}/session/login_password",
        data={"user": "admin", "password": identity["admin"]["password"]},
        headers={"Referer": f"{base}/session/login_password"},
    )
    assert r.status_code == 200 and "ipa_session" in s.cookies
    return s


def rpc(session, base, method, args=None, options=None, referer=True):
    headers = {"Referer": base} if referer else {}
    return session.post(
        f"{base}/session/json", json={"method": method, "params": [args or [], options or {}]}, headers=headers
    )


def test_https_only_with_its_own_ca(identity, base):
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(f"{base}/session/login_password", timeout=5, verify=True)


def test_wrong_password_is_rejected_with_a_reason(identity, base):
    r = requests.post(
        f"{base}/session/login_password",
        data={"user": "admin", "password": "nope"},
        headers={"Referer": base},
        verify=identity["ca"],
        timeout=5,
    )
    assert r.status_code == 401
    assert r.headers["X-IPA-Rejection-Reason"] == "invalid-password"


def test_no_session_is_401(identity, base):
    r = requests.post(
        f"{base}/session/json",
        json={"method": "ping", "params": [[], {}]},
        headers={"Referer": base},
        verify=identity["ca"],
        timeout=5,
    )
    assert r.status_code == 401


def test_referer_is_checked(session, base):
    assert rpc(session, base, "ping", referer=False).status_code == 400


def test_envelope_and_list_values(session, base):
    body = rpc(session, base, "group_show", ["data_engineers"], {"version": "2.251"}).json()
    assert body["error"] is None and body["principal"] == "admin@DATAPLATFORM.TEST"
    result = body["result"]
    assert set(result) >= {"result", "value", "summary"}
    assert result["value"] == "data_engineers"
    assert result["result"]["cn"] == ["data_engineers"]
    assert result["result"]["dn"].startswith("cn=data_engineers,cn=groups,cn=accounts,")


@pytest.mark.parametrize(
    ("method", "args", "options", "code", "name"),
    [
        ("group_show", ["no_such_group"], {}, 4001, "NotFound"),
        ("group_add", ["data_engineers"], {}, 4002, "DuplicateEntry"),
        ("group_add", ["bad name!"], {}, 3009, "ValidationError"),
        ("group_show", ["admins"], {"frobnicate": True}, 3005, "OptionError"),
        ("group_show", ["admins"], {"version": "3.0"}, 901, "VersionError"),
        ("no_such_command", [], {}, 905, "CommandError"),
    ],
)
def test_errors_carry_freeipas_codes_and_names(session, base, method, args, options, code, name):
    err = rpc(session, base, method, args, options).json()["error"]
    assert (err["code"], err["name"]) == (code, name)


def test_add_member_reports_failures_instead_of_raising(session, base):
    body = rpc(session, base, "group_add_member", ["data_engineers"], {"user": ["alice", "ghost"]}).json()
    assert body["error"] is None
    failed = body["result"]["failed"]["member"]["user"]
    assert ["ghost", "no such entry"] in failed
    assert ["alice", "This entry is already a member"] in failed
    assert body["result"]["completed"] == 0


def test_non_admins_are_denied_writes(identity, base):
    s = requests.Session()
    s.verify = identity["ca"]
    s.trust_env = False  # REQUESTS_CA_BUNDLE would win over s.verify
    s.post(
        f"{base}/session/login_password",
        data={"user": "carol", "password": identity["users"]["carol"]["password"]},
        headers={"Referer": base},
    )
    assert rpc(s, base, "group_show", ["admins"]).json()["error"] is None
    err = rpc(s, base, "group_add", ["carols_group"]).json()["error"]
    assert (err["code"], err["name"]) == (2100, "ACIError")
