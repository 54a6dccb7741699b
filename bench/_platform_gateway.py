"""What the gateway benches on the `platform` scenario share (bench/gateway_drills.py,
bench/gateway_soak.py): commands in the gateway container, files copied into it, the API's
health, and throw-away FreeIPA users in the identity peer.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "platform-gateway"
URL = "https://platform-gateway.dataplatform.test:8000/api/v1/clusters/"
PY = "/opt/dask/current/bin/python"

from tests.peers import identity  # the identity peer's LDAP helpers (run the benches with -m)


def sh(cmd: str, check: bool = True, timeout: int = 300) -> str:
    res = subprocess.run(
        ["docker", "exec", "-w", "/tmp", HOST, "sh", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"{cmd}: {res.stderr.strip()[-800:]}")
    return res.stdout.strip()


def put(path: str, text: str) -> None:
    """Write a file in the gateway container (its /tmp is a tmpfs `docker cp` does not see)."""
    subprocess.run(["docker", "exec", "-i", HOST, "sh", "-c", f"cat > {path}"], input=text, text=True, check=True)


def api_status(user: str, password: str) -> str:
    """The HTTP status of the gateway's cluster listing for this user (the password on stdin)."""
    res = subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            HOST,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "5",
            "-K",
            "-",
            URL,
        ],
        input=f'user = "{user}:{password}"\n',
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return res.stdout.strip()


def wait_healthy(since: float, user: str, password: str, timeout: float = 120) -> float | None:
    while time.monotonic() - since < timeout:
        if api_status(user, password) == "200":
            return round(time.monotonic() - since, 2)
        time.sleep(0.2)
    return None


BENCH_UID_BASE = 1200
BENCH_GROUP = "data_engineers"


def _user_dn(uid: str) -> str:
    return f"uid={uid},cn=users,cn=accounts,{identity.SUFFIX}"


def _group_dn(cn: str) -> str:
    return f"cn={cn},cn=groups,cn=accounts,{identity.SUFFIX}"


def _drop_bench_users(conn, names: list[str]) -> None:
    for uid in names:
        conn.modify(_group_dn(BENCH_GROUP), {"member": [("MODIFY_DELETE", [_user_dn(uid)])]})
        conn.delete(_user_dn(uid))
        conn.delete(_group_dn(uid))


@contextlib.contextmanager
def bench_users(count: int, prefix: str = "load") -> Iterator[list[tuple[str, str]]]:
    """`count` FreeIPA users (loadNN, in data_engineers) with fresh random passwords, made in
    the identity peer's 389-ds as tests/peers/identity.py makes alice, removed afterwards.
    The passwords live only in this process and the client it feeds on stdin: never printed."""
    names = [f"{prefix}{i:02d}" for i in range(1, count + 1)]
    conn = identity.ldap_conn()
    _drop_bench_users(conn, names)  # a run that died before its clean-up
    users = []
    for i, uid in enumerate(names, start=1):
        password = secrets.token_urlsafe(18)
        number = BENCH_UID_BASE + i
        identity.ensure_entry(
            conn,
            _group_dn(uid),
            {
                "objectClass": ["top", "posixGroup", "mepManagedEntry"],
                "cn": uid,
                "gidNumber": number,
                "description": f"User private group for {uid}",
            },
        )
        identity.ensure_entry(
            conn,
            _user_dn(uid),
            {
                "objectClass": ["top", "person", "organizationalPerson", "inetOrgPerson", "inetUser", "posixAccount"],
                "uid": uid,
                "cn": uid,
                "sn": uid,
                "uidNumber": number,
                "gidNumber": number,
                "homeDirectory": f"/home/{uid}",
                "loginShell": "/bin/bash",
                "userPassword": password,
            },
        )
        if not conn.modify(_group_dn(BENCH_GROUP), {"member": [("MODIFY_ADD", [_user_dn(uid)])]}):
            raise RuntimeError(f"add {uid} to {BENCH_GROUP}: {conn.result['description']}")
        users.append((uid, password))
    try:
        yield users
    finally:
        _drop_bench_users(conn, names)
        conn.unbind()
