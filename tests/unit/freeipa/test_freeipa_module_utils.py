"""The shared FreeIPA client: error wording, membership arithmetic, TLS verification choice."""

from __future__ import annotations

import pytest
import requests
from python_freeipa import exceptions as ipa_exc

from ansible_collections.dataplatform.dask.plugins.module_utils import freeipa as fu


class FakeClient:
    """Stands in for python_freeipa.ClientMeta: raises or answers what the test says."""

    def __init__(self, answer=None, raises=None, login_raises=None):
        self.answer, self.raises, self.login_raises = answer, raises, login_raises
        self.calls = []

    def login(self, user, password):
        if self.login_raises:
            raise self.login_raises

    def login_kerberos(self):
        if self.login_raises:
            raise self.login_raises
        self.calls.append(("login_kerberos",))

    def _request(self, method, args, options):
        self.calls.append((method, args, options))
        if self.raises:
            raise self.raises
        return self.answer

    def logout(self):
        raise requests.exceptions.ConnectionError("gone")


PARAMS = {
    "ipa_host": "ipa.example.test",
    "ipa_user": "admin",
    "ipa_pass": "pw",
    "ipa_auth": "password",
    "ipa_ca_cert": "/etc/ipa/ca.crt",
    "validate_certs": True,
}


@pytest.mark.parametrize(
    ("current", "wanted", "append", "expected"),
    [
        ([], ["a", "b"], False, (["a", "b"], [])),
        (["a", "b"], ["b", "c"], False, (["c"], ["a"])),
        (["a", "b"], ["b", "c"], True, (["c"], [])),
        (["a"], [], False, ([], ["a"])),
        (["a"], [], True, ([], [])),
        (None, None, False, ([], [])),
    ],
)
def test_diff_members(current, wanted, append, expected):
    assert fu.diff_members(current, wanted, append) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"validate_certs": True, "ipa_ca_cert": "/ca.pem"}, "/ca.pem"),
        ({"validate_certs": True, "ipa_ca_cert": None}, True),
        ({"validate_certs": False, "ipa_ca_cert": "/ca.pem"}, False),
        ({}, True),
    ],
)
def test_verification_is_on_unless_turned_off(params, expected):
    assert fu.verify_option(params) == expected


def test_first_takes_the_first_of_a_list():
    assert fu.first({"cn": ["x", "y"]}, "cn") == "x"
    assert fu.first({"cn": []}, "cn", "d") == "d"
    assert fu.first(None, "cn") is None
    assert fu.first({"has_keytab": False}, "has_keytab") is False


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (ipa_exc.NotFound("x: group not found", 4001), "add member to group g: NotFound: x: group not found"),
        (
            ipa_exc.ValidationError("invalid 'group_name'", 3009),
            "add member to group g: ValidationError: invalid 'group_name'",
        ),
        (ipa_exc.Denied("Insufficient access", 2100), "add member to group g: ACIError: Insufficient access"),
        (ipa_exc.UnknownOption("Unknown option: foo", 3005), "add member to group g: OptionError: Unknown option: foo"),
        (ipa_exc.BadRequest("odd", 4999), "add member to group g: BadRequest: odd"),
    ],
)
def test_errors_name_the_action_and_the_object(err, expected):
    client = fu.FreeIPAClient(PARAMS, client=FakeClient(raises=err))
    with pytest.raises(fu.FreeIPAModuleError) as exc:
        client.call("add member to group g", "group_add_member", ["g"], {})
    assert exc.value.msg == expected
    assert exc.value.code == err.code


def test_find_returns_none_for_not_found_only():
    assert (
        fu.FreeIPAClient(PARAMS, client=FakeClient(raises=ipa_exc.NotFound("x", 4001))).find("read", "group_show", "x")
        is None
    )
    with pytest.raises(fu.FreeIPAModuleError):
        fu.FreeIPAClient(PARAMS, client=FakeClient(raises=ipa_exc.Denied("no", 2100))).find("read", "group_show", "x")


def test_member_call_turns_failed_into_an_error():
    answer = {"completed": 1, "failed": {"member": {"user": [["nobody", "no such entry"]], "group": []}}}
    client = fu.FreeIPAClient(PARAMS, client=FakeClient(answer=answer))
    with pytest.raises(fu.FreeIPAModuleError, match=r"add members to group g: user nobody: no such entry"):
        client.member_call("add members to group g", "group_add_member", ["g"], {"user": ["nobody"]})


def test_member_call_passes_a_clean_result():
    answer = {"completed": 1, "failed": {"member": {"user": [], "group": []}}, "result": {"cn": ["g"]}}
    assert fu.FreeIPAClient(PARAMS, client=FakeClient(answer=answer)).member_call("a", "m", ["g"], {}) == answer


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (ipa_exc.InvalidSessionPassword(), "wrong user name or password"),
        (ipa_exc.PasswordExpired(), "the password has expired"),
        (ipa_exc.UserLocked(), "the account is locked"),
        (requests.exceptions.SSLError("certificate verify failed"), "is not trusted by /etc/ipa/ca.crt"),
        (requests.exceptions.ConnectionError("refused"), "cannot reach FreeIPA at https://ipa.example.test/ipa"),
    ],
)
def test_login_errors_are_worded_for_the_operator(err, expected):
    client = fu.FreeIPAClient(PARAMS, client=FakeClient(login_raises=err))
    with pytest.raises(fu.FreeIPAModuleError) as exc:
        client.login()
    assert expected in exc.value.msg
    assert "log in to FreeIPA at https://ipa.example.test/ipa" in exc.value.msg
    assert "pw" not in exc.value.msg.split("as admin")[-1]


def test_kerberos_login_uses_the_credential_cache():
    fake = FakeClient()
    fu.FreeIPAClient({**PARAMS, "ipa_auth": "kerberos", "ipa_pass": None}, client=fake).login()
    assert fake.calls == [("login_kerberos",)]


def test_logout_never_fails():
    fu.FreeIPAClient(PARAMS, client=FakeClient()).logout()


def test_password_is_no_log():
    spec = fu.freeipa_argument_spec()
    assert spec["ipa_pass"]["no_log"] is True
    assert spec["validate_certs"]["default"] is True
