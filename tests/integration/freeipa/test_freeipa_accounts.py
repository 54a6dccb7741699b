"""freeipa_sysaccount and freeipa_service against the identity peer, down to an LDAP bind and a kinit."""

from __future__ import annotations

import os
import subprocess

import pytest


def ldap_bind(identity, dn: str, password: str) -> bool:
    res = subprocess.run(
        ["ldapwhoami", "-x", "-H", identity["ldap_uri"][0], "-D", dn, "-w", password],
        capture_output=True,
        text=True,
        check=False,
    )
    return res.returncode == 0


def test_sysaccount_lifecycle(ansible, ipa_conn, identity, unique, changed_once):
    base = {**ipa_conn, "name": f"{unique}-bind"}
    dn = f"uid={base['name']},cn=sysaccounts,cn=etc,{identity['suffix']}"

    runs = ansible.four_times("freeipa_sysaccount", {**base, "password": "First-Secret-123", "description": "bind"})
    changed_once(runs)
    assert runs[1]["sysaccount"]["dn"] == dn
    assert "First-Secret-123" not in str(runs)  # no_log: the password is never echoed
    assert ldap_bind(identity, dn, "First-Secret-123")

    # another password with update_password=on_create: nothing changes
    res = ansible("freeipa_sysaccount", {**base, "password": "Second-Secret-123"})
    assert res["changed"] is False
    assert ldap_bind(identity, dn, "First-Secret-123")

    # rotation: changed every time (the server never shows a password to compare with)
    rotate = {**base, "password": "Second-Secret-123", "update_password": "always"}
    assert [
        ansible("freeipa_sysaccount", rotate, check=True)["changed"],
        ansible("freeipa_sysaccount", rotate)["changed"],
    ] == [True, True]
    assert ldap_bind(identity, dn, "Second-Secret-123")
    assert not ldap_bind(identity, dn, "First-Secret-123")

    changed_once(ansible.four_times("freeipa_sysaccount", {**base, "disabled": True}))
    changed_once(ansible.four_times("freeipa_sysaccount", {**base, "state": "absent"}))
    assert not ldap_bind(identity, dn, "Second-Secret-123")


def test_sysaccount_needs_a_password_to_be_created(ansible, ipa_conn, unique):
    res = ansible("freeipa_sysaccount", {**ipa_conn, "name": f"{unique}-nopw"}, check=True)
    assert res["failed"] and "password is required to create it" in res["msg"]


@pytest.fixture
def kadmin_env(identity, tmp_path):
    env = dict(os.environ)
    env["KRB5_CONFIG"] = identity["krb5_conf"]
    env["KRB5CCNAME"] = f"FILE:{tmp_path}/ccache"
    return env


def test_service_principal_gets_a_working_keytab(
    ansible, ipa_conn, identity, unique, changed_once, kadmin_env, tmp_path
):
    fqdn = f"{unique}.{identity['domain']}"
    principal = f"HTTP/{fqdn}"
    base = {**ipa_conn, "principal": principal}

    # the host is not enrolled: refused, unless skip_host_check
    res = ansible("freeipa_service", base)
    assert res["failed"] and f"host {fqdn} is not enrolled" in res["msg"]
    runs = ansible.four_times("freeipa_service", {**base, "skip_host_check": True})
    changed_once(runs)
    assert runs[1]["service"]["principal"] == f"{principal}@{identity['realm']}"

    # the enrolment principal fetches its keytab (what freeipa_enroll does) and kinit -k works
    keytab = tmp_path / "http.keytab"
    subprocess.run(
        [
            "kadmin",
            "-p",
            identity["enroll"]["principal"],
            "-w",
            identity["enroll"]["password"],
            "-q",
            f"ktadd -k {keytab} {principal}",
        ],
        env=kadmin_env,
        check=True,
        capture_output=True,
    )
    subprocess.run(["kinit", "-k", "-t", str(keytab), principal], env=kadmin_env, check=True, capture_output=True)
    klist = subprocess.run(["klist"], env=kadmin_env, check=True, capture_output=True, text=True).stdout
    assert f"{principal}@{identity['realm']}" in klist

    # unknown managing host: refused before anything changes
    res = ansible("freeipa_service", {**base, "hosts": ["no-such-host.dataplatform.test"]})
    assert res["failed"] and "no such host: no-such-host.dataplatform.test" in res["msg"]

    changed_once(ansible.four_times("freeipa_service", {**base, "state": "absent"}))
    res = subprocess.run(
        ["kinit", "-k", "-t", str(keytab), principal], env=kadmin_env, capture_output=True, check=False
    )
    assert res.returncode != 0


def test_service_principal_is_validated(ansible, ipa_conn):
    res = ansible("freeipa_service", {**ipa_conn, "principal": "not-a-principal"})
    assert res["failed"] and "invalid service principal 'not-a-principal'" in res["msg"]


def test_user_password_is_checked_by_the_kdc(identity, kadmin_env):
    ok = subprocess.run(
        ["kinit", "alice"],
        input=identity["users"]["alice"]["password"] + "\n",
        env=kadmin_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        ["kinit", "alice"], input="not-her-password\n", env=kadmin_env, capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0
