"""Behaviour of the gateway: FreeIPA logins both ways, clusters as the user's uid, quotas,
admins, refusals, a restart that keeps clusters, idle culling. Users come from the identity peer.

Run by the `platform` scenario (make test: its gateway, converged by playbooks/site.yml, and an
image bake beside it) and by `gateway` (the gateway alone, a quick loop on the role): the hosts are
the scenario inventory's dask_gateway and gateway_bake groups."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.peers.molecule_inventory import group as inventory_group


HOST = inventory_group("dask_gateway")[0]
BAKE = inventory_group("gateway_bake")[0]  # the role with dask_gateway_start_services: false, no runtime settings
FQDN = f"{HOST}.dataplatform.test"
URL = f"https://{FQDN}:8000"
CA = "/tmp/dataplatform-ca.crt"  # a copy of /etc/dask/tls/ca.crt that users can read
PY = "/opt/dask/current/bin/python"
CHECKS = "/tmp/gateway_checks.py"
HERE = Path(__file__).resolve().parent
PASSWORDS = {"alice": "Alice-Secret123", "bob": "Bob-Secret123", "carol": "Carol-Secret123", "dave": "Dave-Secret123"}
ALICE_UID = 1101


def sh(
    cmd: str, stdin: str | None = None, check: bool = True, timeout: int = 300, host: str = HOST
) -> subprocess.CompletedProcess:
    res = subprocess.run(
        ["docker", "exec", "-i", host, "sh", "-c", cmd],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} -> {res.returncode}: {res.stdout} {res.stderr}")
    return res


def kinit(user: str) -> str:
    """A ticket in a cache owned by the user (kinit run as them)."""
    cache = f"/tmp/krb5cc_test_{user}"
    sh(f"rm -f {cache}; runuser -u {user} -- env KRB5CCNAME=FILE:{cache} kinit {user}", stdin=PASSWORDS[user] + "\n")
    return cache


def checks(action: str, user: str, *args: str, auth: str = "basic", cache: str = "", env: str = "") -> dict:
    """Run a client action; with a ticket cache, as the Unix user themselves (Gateway() defaults).
    TLS is verified against the system trust store, where the role's client tasks put the CA."""
    env = f"{env} KRB5CCNAME=FILE:{cache}" if cache else env
    run_as = f"runuser -u {user} -- " if cache else ""
    cmd = f"cd /tmp && {run_as}env {env} {PY} {CHECKS} {action} {auth} {user} '{PASSWORDS.get(user, '')}' " + " ".join(
        args
    )
    out = sh(cmd).stdout
    return json.loads(out.strip().splitlines()[-1])


def scheduler_pid(uid: int) -> str:
    """A user's scheduler: named dask-scheduler when forked by the launcher, `dask scheduler` when spawned."""
    return sh(f"{{ pgrep -u {uid} -x dask-scheduler; pgrep -u {uid} -f 'dask scheduler'; }} | head -1").stdout.strip()


def curl(args: str) -> tuple[int, str]:
    res = sh(f"curl -s --cacert {CA} -o /tmp/body -w '%{{http_code}}' {args}; echo; cat /tmp/body", check=False)
    code, _sep, body = res.stdout.partition("\n")
    return int(code or 0), body


@pytest.fixture(scope="module", autouse=True)
def client_script() -> None:
    # /tmp is a tmpfs in the container, which `docker cp` does not see: copy through /root.
    subprocess.run(["docker", "cp", str(HERE / "gateway_checks.py"), f"{HOST}:/root/gateway_checks.py"], check=True)
    sh(f"install -m 0644 /root/gateway_checks.py {CHECKS} && install -m 0644 /etc/dask/tls/ca.crt {CA}")


def test_service_is_hardened_root_with_private_state() -> None:
    assert sh("systemctl is-active dask-gateway").stdout.strip() == "active"
    props = sh(
        "systemctl show dask-gateway -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p KillMode"
    ).stdout
    assert "NoNewPrivileges=yes" in props
    assert "ProtectSystem=strict" in props
    assert "KillMode=process" in props
    assert "ProtectHome=no" in props  # users' clusters are its children: they need their homes
    assert sh("stat -c '%a %U' /var/lib/dask-gateway/encrypt-keys /etc/dask-gateway/ldap-bind-password").stdout.split(
        "\n"
    )[:2] == [
        "600 root",
        "600 root",
    ]
    # The public endpoint is TLS only: plain HTTP on it gets no API answer.
    assert sh(f"curl -s -o /dev/null -w '%{{http_code}}' http://{FQDN}:8000/api/health", check=False).stdout != "200"
    assert curl(f"{URL}/api/health")[0] == 200


def test_wrong_or_empty_password_gets_401() -> None:
    code, _body = curl(f"-u alice:wrong {URL}/api/v1/clusters/")
    assert code == 401
    code, _body = curl(f"-u alice: {URL}/api/v1/clusters/")
    assert code == 401
    headers = sh(f"curl -s -D - -o /dev/null --cacert {CA} {URL}/api/v1/clusters/").stdout.lower()  # HTTP/2: lower case
    assert "www-authenticate: negotiate" in headers
    assert 'www-authenticate: basic realm="dask-gateway"' in headers


def test_carol_is_refused_with_the_reason() -> None:
    code, body = curl(f"-u carol:{PASSWORDS['carol']} {URL}/api/v1/clusters/")
    assert code == 422
    assert "none of the Dask platform groups" in body
    # The Python client raises the reason, with a password and with a ticket (Gateway()).
    reason = "user carol is in none of the Dask platform groups (admins, data_analysts, data_engineers)"
    assert reason in checks("new", "carol")["error"]
    assert reason in checks("list", "carol", auth="default", cache=kinit("carol"))["error"]


def test_spnego_with_a_ticket_and_without() -> None:
    cache = kinit("alice")
    negotiate = f"curl -s --negotiate -u : --cacert {CA} -o /dev/null -w '%{{http_code}}' {URL}/api/v1/clusters/"
    assert sh(f"KRB5CCNAME=FILE:{cache} {negotiate}").stdout == "200"
    assert sh(f"KRB5CCNAME=FILE:/tmp/no-ticket {negotiate}").stdout == "401"


def test_gateway_with_no_arguments_verifies_tls_with_the_system_trust_store() -> None:
    cache = kinit("alice")
    out = checks("list", "alice", auth="default", cache=cache)
    assert "error" not in out and isinstance(out["clusters"], dict), out
    # The control: without the system trust store, the same call fails verification.
    out = checks("list", "alice", auth="default", cache=cache, env="SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/nonexistent")
    assert "CERTIFICATE_VERIFY_FAILED" in out["error"]


def test_alice_with_a_ticket_runs_a_cluster_as_her_uid() -> None:
    cache = kinit("alice")
    sh("mkdir -p /home/alice && chown alice: /home/alice && chmod 0700 /home/alice")  # as pam_mkhomedir
    out = checks("session", "alice", "2", auth="default", cache=cache)  # Gateway() with no arguments
    assert out["workers"] == 2
    assert out["array_sum"] == out["array_expected"]
    assert out["squares"] == sum(i * i for i in range(100))
    assert out["scheduler"]["uid"] == ALICE_UID
    assert [w["uid"] for w in out["worker_ids"]] == [ALICE_UID, ALICE_UID]
    # The cluster environment of the role reaches the processes' Dask configuration.
    assert {out["scheduler"]["tick"]} | {w["tick"] for w in out["worker_ids"]} == {"500ms"}
    data_engineers = int(sh("getent group data_engineers | cut -d: -f3").stdout)
    assert data_engineers in out["scheduler"]["groups"]  # sssd groups, through getgrouplist
    assert 0 not in out["scheduler"]["groups"]
    # Her cluster uses her home (~), which the service's hardening must not hide.
    assert out["home_file"] == "/home/alice/written-by-dask.txt"
    assert out["home_read"] == f"uid {ALICE_UID}"
    assert sh("stat -c '%u' /home/alice/written-by-dask.txt").stdout.strip() == str(ALICE_UID)


def test_alice_with_her_password_runs_a_cluster() -> None:
    out = checks("session", "alice", "2")
    assert out["workers"] == 2
    assert out["array_sum"] == out["array_expected"]
    assert {w["uid"] for w in out["worker_ids"]} == {ALICE_UID}
    assert out["dashboard_status"] == {"owner": 200, "anonymous": 401, "other": 403}
    wd = out["scheduler"]["cwd"]
    assert wd.startswith("/var/lib/dask-gateway/clusters/")
    assert sh("stat -c '%U %G' /").stdout.strip() == "root root"


def test_bob_beyond_his_quota_is_refused_or_capped() -> None:
    out = checks("new", "bob", "worker_cores=2")
    assert "worker_cores=2 exceeds the data_analysts quota of 1 cores per worker" in out["error"]
    out = checks("new", "bob", "worker_memory=3")
    assert "worker_memory=3 GB exceeds the data_analysts quota of 2 GB per worker" in out["error"]
    out = checks("new", "bob")
    name = out["cluster"]
    scaled = checks("scale", "bob", name, "5")
    assert any("resource limit of 1 workers" in w for w in scaled["warnings"]), scaled
    checks("stop", "bob", name)


def test_users_see_only_their_clusters_and_admins_all() -> None:
    bobs = checks("new", "bob")["cluster"]
    alices = checks("new", "alice")["cluster"]
    try:
        mine = checks("list", "alice")["clusters"]
        assert alices in mine
        assert bobs not in mine
        refused = checks("stop", "alice", bobs)
        assert refused["ok"] is False
        assert "403" in refused["error"]
        everyone = checks("list", "dave")["clusters"]
        assert {alices, bobs} <= set(everyone)
        assert checks("stop", "dave", bobs)["ok"] is True
        deadline = time.time() + 60
        while bobs in checks("list", "bob")["clusters"] and time.time() < deadline:
            time.sleep(2)
        assert bobs not in checks("list", "bob")["clusters"]
    finally:
        checks("stop", "alice", alices)
        checks("stop", "dave", bobs)


def test_the_fleet_share_refusal_names_the_numbers() -> None:
    # 25 % of the scenario's 16-core fleet is 4 cores: a scheduler and 3 workers fill it.
    name = checks("new", "alice")["cluster"]
    try:
        assert checks("scale", "alice", name, "3")["ok"] is True
        out = checks("new", "alice")
        assert "user alice would use 5 cores; the quota is 4 cores per user (25% of the 16-core fleet)" in out["error"]
        assert "4 already in use" in out["error"]
    finally:
        checks("stop", "alice", name)


def test_the_third_cluster_of_a_user_is_refused() -> None:
    names = [checks("new", "alice")["cluster"] for _i in range(2)]
    try:
        out = checks("new", "alice")
        assert "quota is 2 clusters per user" in out["error"]
    finally:
        for n in names:
            checks("stop", "alice", n)


def test_a_restart_keeps_alices_cluster() -> None:
    out = checks("session", "alice", "1", "keep")
    name = out["cluster"]
    pid = scheduler_pid(ALICE_UID)
    # Forked by the launcher (dask_gateway_launcher: zygote), which names it.
    assert pid and sh(f"pgrep -u {ALICE_UID} -x dask-scheduler").stdout.split() == [pid]
    try:
        sh("systemctl restart dask-gateway")
        deadline = time.time() + 60
        while curl(f"{URL}/api/health")[0] != 200 and time.time() < deadline:
            time.sleep(1)
        assert checks("list", "alice")["clusters"].get(name) == "RUNNING"
        again = checks("compute", "alice", name)
        assert again["array_sum"] == again["array_expected"]
        assert again["scheduler"]["uid"] == ALICE_UID
        assert scheduler_pid(ALICE_UID) == pid
    finally:
        checks("stop", "alice", name)


def test_an_idle_cluster_is_culled() -> None:
    # The scenario sets dask_gateway_idle_timeout: 40.
    name = checks("new", "alice")["cluster"]
    deadline = time.time() + 150
    while time.time() < deadline:
        if name not in checks("list", "alice")["clusters"]:
            break
        time.sleep(5)
    assert name not in checks("list", "alice")["clusters"]


def test_a_baked_gateway_is_installed_and_waits_for_its_settings() -> None:
    def bake(cmd: str, check: bool = True) -> str:
        return sh(cmd, check=check, host=BAKE).stdout.strip()

    # Installed: the gateway, its package and the Dask environment import.
    assert (
        bake(f"{PY} -c 'import dask_gateway_server, distributed, dataplatform_dask.gateway.backend; print(1)'") == "1"
    )
    # Enabled, not started, and no secret baked into the image.
    assert bake("systemctl is-enabled dask-gateway") == "enabled"
    assert bake("systemctl is-active dask-gateway", check=False) == "inactive"
    assert (
        bake("ls /etc/dask-gateway/ldap-bind-password /var/lib/dask-gateway/encrypt-keys 2>&1", check=False).count(
            "No such file"
        )
        == 2
    )
    # A boot of the image starts nothing that fails: the unit's condition holds it back.
    bake("systemctl start dask-gateway")
    assert bake("systemctl is-active dask-gateway", check=False) == "inactive"
    props = set(bake("systemctl show dask-gateway -p ConditionResult -p Result").split())
    assert props == {"Result=success", "ConditionResult=no"}
