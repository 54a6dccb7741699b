"""Behaviour of an enrolled host: FreeIPA users and groups resolve through sssd, the KDC checks
passwords (a wrong one is refused), the fetched service keytab works and nobody else reads it."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.peers import identity  # the checkout is on pytest's pythonpath (pyproject.toml)

HOSTS = ["identity-debian12", "identity-debian13"]
KEYTAB = "/etc/dask-gateway/http.keytab"


def sh(host: str, cmd: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(
        ["docker", "exec", "-i", host, "sh", "-c", cmd],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"{host}: {cmd} -> {res.returncode}: {res.stdout} {res.stderr}")
    return res


@pytest.fixture(params=HOSTS)
def host(request) -> str:
    return request.param


def test_alice_resolves_with_her_groups(host):
    out = sh(host, "id alice").stdout
    assert "uid=1101(alice)" in out
    assert "data_engineers" in out
    assert "dask_users" in out  # nested: data_engineers is a member of dask_users
    assert "data_analysts" not in out


def test_platform_groups_resolve(host):
    assert sh(host, "getent group data_engineers").stdout.strip().endswith(":alice")
    assert "bob" in sh(host, "getent group data_analysts").stdout
    assert sh(host, "getent group dask_users").returncode == 0


def test_carol_is_in_no_platform_group(host):
    out = sh(host, "id carol").stdout
    assert "uid=1103(carol)" in out
    assert "dask_users" not in out and "data_" not in out


def test_unknown_user_does_not_resolve(host):
    assert sh(host, "id nobody-at-all", check=False).returncode != 0


def test_kinit_with_the_right_password(host):
    sh(
        host,
        "KRB5CCNAME=FILE:/tmp/cc.alice kinit alice && klist -c FILE:/tmp/cc.alice | grep -q alice@DATAPLATFORM.TEST",
        stdin=identity.USERS["alice"]["password"] + "\n",
    )


def test_kinit_refuses_a_wrong_password(host):
    res = sh(host, "KRB5CCNAME=FILE:/tmp/cc.bad kinit alice", stdin="not-her-password\n", check=False)
    assert res.returncode != 0
    assert "incorrect" in res.stderr.lower() or "failed" in res.stderr.lower()


def su_alice(host: str, password: str) -> subprocess.CompletedProcess:
    """A login through PAM and sssd (krb5 auth): `su - alice` from an unprivileged user, on a pty.

    The password is typed once su prompts for it (a second later), as a person would.
    """
    cmd = (
        """(sleep 2; printf '%s\\n' "$PW") | runuser -u nobody -- script -qec "su -c 'id -un; pwd' - alice" /dev/null"""
    )
    return subprocess.run(
        ["docker", "exec", "-e", f"PW={password}", host, "sh", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_login_with_the_right_password_makes_the_home(host):
    res = su_alice(host, identity.USERS["alice"]["password"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "alice" in res.stdout and "/home/alice" in res.stdout


def test_login_with_a_wrong_password_is_refused(host):
    res = su_alice(host, "not-her-password")
    assert res.returncode != 0
    assert "Authentication failure" in res.stdout + res.stderr


def test_service_keytab_works_and_is_private(host):
    stat = sh(host, f"stat -c '%a %U %G' {KEYTAB}").stdout.split()
    assert stat == ["600", "daemon", "daemon"]
    principal = f"HTTP/{host}.dataplatform.test"
    cc = "FILE:/tmp/cc.http"
    sh(host, f"KRB5CCNAME={cc} kinit -k -t {KEYTAB} {principal} && klist -c {cc} | grep -q {principal}")


def test_host_keytab_holds_the_host_principal(host):
    assert f"host/{host}.dataplatform.test@DATAPLATFORM.TEST" in sh(host, "klist -k /etc/krb5.keytab").stdout


def test_sssd_config_is_private(host):
    """It holds the bind password: root's, readable by the sssd group at most (sssd 2.10)."""
    mode, owner, group = sh(host, "stat -c '%a %U %G' /etc/sssd/sssd.conf").stdout.split()
    assert owner == "root" and mode in ("600", "640") and mode.endswith("0")
    assert group in ("root", "sssd")


# ---------------------------------------------------------------------------- sudo from FreeIPA
LAUNCHER = "/opt/dask/gateway/bin/dask-gateway-jobqueue-launcher"


def as_gateway(host: str, cmd: str) -> subprocess.CompletedProcess:
    """`cmd` run by the gateway's local service user, with no terminal and no password to give."""
    return sh(host, f"runuser -u dask-gateway -- {cmd} </dev/null", check=False)


def gateway_rules(host: str) -> str:
    """`sudo -ll -U dask-gateway`, once sssd has fetched the rule from LDAP (it may take a moment)."""
    out = ""
    for _attempt in range(30):
        out = sh(host, "sudo -ll -U dask-gateway", check=False).stdout
        if LAUNCHER in out:
            break
        time.sleep(2)
    return out


def test_the_launcher_rule_comes_from_freeipa(host):
    out = gateway_rules(host)
    assert "LDAP Role: dask-gateway-launcher" in out, out  # sudo got it from sssd, not a file
    assert "%dask_users" in out and LAUNCHER in out and "!authenticate" in out
    runas = [line.strip() for line in out.splitlines() if line.strip().startswith("RunAsUsers:")]
    assert runas == ["RunAsUsers: %dask_users"], runas  # never ALL, never root
    assert sh(host, "grep -rs dask-gateway /etc/sudoers /etc/sudoers.d", check=False).returncode == 1


def test_the_gateway_starts_the_launcher_as_a_platform_user(host):
    gateway_rules(host)
    for user in ("alice", "bob"):  # data_engineers and data_analysts are in dask_users
        res = as_gateway(host, f"sudo -n -u {user} {LAUNCHER}")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == f"launcher as {user}"


@pytest.mark.parametrize("target", ["root", "carol"])
def test_the_gateway_never_runs_it_as_root_or_an_outsider(host, target):
    gateway_rules(host)
    res = as_gateway(host, f"sudo -n -u {target} {LAUNCHER}")
    assert res.returncode != 0 and "launcher as" not in res.stdout
    assert "not allowed to execute" in res.stderr or "a password is required" in res.stderr, res.stderr


def test_the_rule_allows_only_the_launcher(host):
    gateway_rules(host)
    res = as_gateway(host, "sudo -n -u alice /usr/bin/id")
    assert res.returncode != 0 and "uid=" not in res.stdout
    res = as_gateway(host, f"sudo -n {LAUNCHER}")  # no -u: root
    assert res.returncode != 0 and "launcher as" not in res.stdout
