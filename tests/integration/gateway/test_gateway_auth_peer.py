"""The gateway's authenticator against the identity peer's real 389-ds and KDC.

LDAP binds and memberOf lookups with the dask-service account on 389-ds (FreeIPA's tree,
memberOf plugin for nested groups), and a full SPNEGO round (initiator and acceptor through
the system GSSAPI library) with a keytab the peer's kadmind issues.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dataplatform_dask.gateway.auth import AuthError, Credentials, Directory

ROOT = Path(__file__).resolve().parents[3]

SUFFIX = "dc=dataplatform,dc=test"
BIND_DN = f"uid=dask-service,cn=sysaccounts,cn=etc,{SUFFIX}"


@pytest.fixture(scope="module")
def peer() -> dict:
    subprocess.run([str(ROOT / "scripts" / "bootstrap-host.sh"), "--identity"], check=True)
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests/peers/identity.py"), "start", "--platform"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def directory(peer) -> Directory:
    return Directory(f"ldap://127.0.0.1:{peer['ports']['ldap']}", SUFFIX, BIND_DN, "Dask-Service-Secret123")


def test_passwords_are_checked_by_389ds(directory):
    assert directory.check_password("alice", "Alice-Secret123") is True
    assert directory.check_password("alice", "Bob-Secret123") is False
    assert directory.check_password("nobody-here", "x") is False
    with pytest.raises(AuthError):
        directory.check_password("alice", "")


def test_groups_are_read_with_the_bind_account_including_nested(directory):
    alice = directory.groups("alice")
    assert "data_engineers" in alice
    assert "dask_users" in alice  # nested: data_engineers is a member of dask_users
    assert "data_analysts" not in alice
    assert "data_analysts" in directory.groups("bob")
    assert not {"data_engineers", "data_analysts", "admins"} & set(directory.groups("carol"))
    assert "admins" in directory.groups("dave")
    assert directory.groups("nobody-here") is None


@pytest.mark.parametrize("name", ["*", "alice)(uid=*", "alice*", "(objectClass=*)"])
def test_injection_never_reaches_the_directory(directory, name):
    with pytest.raises(AuthError):
        directory.groups(name)
    with pytest.raises(AuthError):
        directory.check_password(name, "Alice-Secret123")


def test_credentials_end_to_end_over_basic(directory):
    import base64

    creds = Credentials(directory, "DATAPLATFORM.TEST", cache_ttl=5)
    header = "Basic " + base64.b64encode(b"alice:Alice-Secret123").decode()
    assert creds.verify(header) == ("alice", None)
    with pytest.raises(AuthError):
        creds.verify("Basic " + base64.b64encode(b"alice:wrong").decode())


SPNEGO_ROUND = """
import json
from dataplatform_dask.gateway import spnego
token = spnego.initiate("localhost")
principal, out = spnego.accept(token)
print(json.dumps({"principal": principal, "token_len": len(token)}))
"""


def test_spnego_round_with_a_real_ticket_and_keytab(peer, tmp_path):
    if not Path("/usr/sbin/kadmin").exists() and not Path("/usr/bin/kadmin").exists():
        pytest.skip("kadmin (krb5-user) is not installed")
    env = dict(os.environ, KRB5_CONFIG=peer["krb5_conf"])
    principal = "HTTP/localhost"
    keytab = tmp_path / "http.keytab"
    kadmin = [
        "kadmin",
        "-p",
        "enroll@DATAPLATFORM.TEST",
        "-w",
        "Enroll-Secret123",
        "-s",
        f"127.0.0.1:{peer['ports']['kadmin']}",
        "-q",
    ]
    subprocess.run([*kadmin, f"addprinc -randkey {principal}"], env=env, capture_output=True, text=True, check=False)
    res = subprocess.run(
        [*kadmin, f"ktadd -k {keytab} {principal}"], env=env, capture_output=True, text=True, check=False
    )
    assert keytab.exists(), res.stdout + res.stderr
    cache = tmp_path / f"cc-{uuid.uuid4().hex}"
    subprocess.run(
        ["kinit", "alice"],
        input="Alice-Secret123\n",
        env=dict(env, KRB5CCNAME=f"FILE:{cache}"),
        text=True,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [sys.executable, "-c", SPNEGO_ROUND],
        env=dict(env, KRB5CCNAME=f"FILE:{cache}", KRB5_KTNAME=f"FILE:{keytab}"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["principal"] == "alice@DATAPLATFORM.TEST"
    # Without a ticket there is nothing to send.
    out = subprocess.run(
        [sys.executable, "-c", SPNEGO_ROUND],
        env=dict(env, KRB5CCNAME=f"FILE:{tmp_path}/none", KRB5_KTNAME=f"FILE:{keytab}"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "GSSError" in out.stderr
