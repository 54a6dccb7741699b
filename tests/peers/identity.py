"""The identity test peer: an MIT KDC, 389-ds holding FreeIPA's tree, and the FreeIPA JSON-RPC peer.

No FreeIPA server can be installed on these machines, so the tests, the Molecule scenarios and
the demo talk to this instead. Nothing here auto-starts (no systemd PID 1 on the host): every
daemon is started by hand and found again through its PID file, so `start` is idempotent.

    python tests/peers/identity.py start [--listen 172.18.0.1] [--platform]
    python tests/peers/identity.py status   # JSON: realm, addresses, ports, CA, users
    python tests/peers/identity.py stop

State lives in .cache/identity (KDC database, TLS CA, logs, PID files); the 389-ds instance
`slapd-dataplatform` lives where 389-ds keeps instances (/etc/dirsrv, /var/lib/dirsrv), as
dscreate only installs there. Servers bind to the addresses given (127.0.0.1 always, plus
e.g. the gateway address of the docker network `molecule`), never to 0.0.0.0. 389-ds takes a
single listen address, so it binds 127.0.0.1 and the RPC peer relays LDAP from the others. Asking for an
address the running peer does not listen on restarts it on the union of both.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("DP_IDENTITY_STATE", ROOT / ".cache" / "identity"))
REALM = "DATAPLATFORM.TEST"
DOMAIN = "dataplatform.test"
SUFFIX = "dc=dataplatform,dc=test"
INSTANCE = "dataplatform"
DM_DN = "cn=Directory Manager"
DM_PASSWORD = "Directory-Manager-Secret123"
KDC_MASTER_PASSWORD = "Kdc-Master-Secret123"
RPC_CODE = ("freeipa_rpc.py", "identity.py")
PORTS = {"kdc": 1088, "kadmin": 1749, "kpasswd": 1464, "ldap": 1389, "rpc": 1443}

# FreeIPA's own admin, the platform's people and the enrolment principal. Passwords are known
# to the tests; `carol` is in no platform group on purpose.
ADMIN = {"uid": "admin", "password": "Secret123", "uidnumber": 1000, "groups": ["admins"]}
USERS = {
    "alice": {"password": "Alice-Secret123", "uidnumber": 1101, "groups": ["data_engineers"]},
    "bob": {"password": "Bob-Secret123", "uidnumber": 1102, "groups": ["data_analysts"]},
    "carol": {"password": "Carol-Secret123", "uidnumber": 1103, "groups": []},
    "dave": {"password": "Dave-Secret123", "uidnumber": 1104, "groups": ["admins"]},
}
ENROLL_PRINCIPAL = "enroll"
ENROLL_PASSWORD = "Enroll-Secret123"
SERVICE_ACCOUNT = "dask-service"
SERVICE_ACCOUNT_PASSWORD = "Dask-Service-Secret123"
# `--platform` seeds these groups directly (what playbooks/freeipa.yml makes through the API),
# for consumers that want the demo's identities without running Ansible.
PLATFORM_GROUPS = {
    "data_engineers": {"gidnumber": 2001, "users": ["alice"], "groups": []},
    "data_analysts": {"gidnumber": 2002, "users": ["bob"], "groups": []},
    "dask_users": {"gidnumber": 2000, "users": [], "groups": ["data_engineers", "data_analysts", "admins"]},
}


def log(msg: str) -> None:
    print(f"==> identity: {msg}", file=sys.stderr, flush=True)


def krb_env() -> dict[str, str]:
    env = dict(os.environ)
    env["KRB5_CONFIG"] = str(STATE / "krb5" / "krb5.conf")
    env["KRB5_KDC_PROFILE"] = str(STATE / "krb5" / "kdc.conf")
    return env


def run(cmd: list[str], *, env: dict | None = None, input_: str | None = None, check: bool = True) -> str:
    res = subprocess.run(cmd, env=env, input=input_, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop_pid(pidfile: Path, name: str) -> None:
    pid = pid_alive(pidfile)
    if pid:
        log(f"stopping {name} (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        for _attempt in range(100):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)


def is_local(address: str) -> bool:
    """True if this host owns `address` (it can bind it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing answers on {host}:{port} after {timeout:.0f} s")


# ---------------------------------------------------------------------------- Kerberos
def write_krb5(listen: list[str]) -> None:
    kdir = STATE / "krb5"
    kdir.mkdir(parents=True, exist_ok=True)
    kdc = ", ".join(f"{a}:{PORTS['kdc']}" for a in listen)
    kadm = ", ".join(f"{a}:{PORTS['kadmin']}" for a in listen)
    kpw = ", ".join(f"{a}:{PORTS['kpasswd']}" for a in listen)
    (kdir / "kdc.conf").write_text(
        f"""[kdcdefaults]
    kdc_listen = {kdc}
    kdc_tcp_listen = {kdc}

[realms]
    {REALM} = {{
        database_name = {kdir}/principal
        key_stash_file = {kdir}/stash
        acl_file = {kdir}/kadm5.acl
        kadmind_listen = {kadm}
        kpasswd_listen = {kpw}
        max_life = 10h 0m 0s
        max_renewable_life = 7d 0h 0m 0s
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{kdir}/kdc.log
    admin_server = FILE:{kdir}/kadmind.log
"""
    )
    (kdir / "krb5.conf").write_text(client_krb5_conf("127.0.0.1"))
    # admin may do everything; the enrolment principal only manages host and service keys.
    (kdir / "kadm5.acl").write_text(
        f"admin@{REALM} *\n{ENROLL_PRINCIPAL}@{REALM} * host/*@{REALM}\n{ENROLL_PRINCIPAL}@{REALM} * HTTP/*@{REALM}\n"
    )


def client_krb5_conf(address: str) -> str:
    """A client krb5.conf that reaches this peer on `address` (what the role templates for real)."""
    return f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    udp_preference_limit = 1

[realms]
    {REALM} = {{
        kdc = {address}:{PORTS["kdc"]}
        admin_server = {address}:{PORTS["kadmin"]}
        kpasswd_server = {address}:{PORTS["kpasswd"]}
    }}

[domain_realm]
    .{DOMAIN} = {REALM}
    {DOMAIN} = {REALM}
"""


def kadmin_local(query: str) -> str:
    return run(["kadmin.local", "-r", REALM, "-q", query], env=krb_env())


def principal_exists(name: str) -> bool:
    return "Principal:" in kadmin_local(f"getprinc {name}")


def ensure_kdc(listen: list[str]) -> None:
    kdir = STATE / "krb5"
    if not (kdir / "principal").exists():
        log(f"creating the KDC database for {REALM}")
        run(["kdb5_util", "create", "-s", "-r", REALM, "-P", KDC_MASTER_PASSWORD], env=krb_env())
    known = set(kadmin_local("listprincs").split())
    for uid, spec in [("admin", ADMIN), *USERS.items()]:
        if f"{uid}@{REALM}" not in known:
            kadmin_local(f"addprinc -pw {spec['password']} +requires_preauth {uid}")
    if f"{ENROLL_PRINCIPAL}@{REALM}" not in known:
        kadmin_local(f"addprinc -pw {ENROLL_PASSWORD} +requires_preauth {ENROLL_PRINCIPAL}")
    if not pid_alive(kdir / "krb5kdc.pid"):
        log("starting krb5kdc")
        run(["krb5kdc", "-r", REALM, "-P", str(kdir / "krb5kdc.pid")], env=krb_env())
    if not pid_alive(kdir / "kadmind.pid"):
        log("starting kadmind")
        run(["kadmind", "-r", REALM, "-P", str(kdir / "kadmind.pid")], env=krb_env())
    for addr in listen:
        wait_port(addr, PORTS["kdc"])
        wait_port(addr, PORTS["kadmin"])


# ---------------------------------------------------------------------------- 389-ds
def ds_dir() -> Path:
    return Path("/etc/dirsrv") / f"slapd-{INSTANCE}"


def ds_pidfile() -> Path:
    return Path("/run/dirsrv") / f"slapd-{INSTANCE}.pid"


def ensure_ds(listen: list[str]) -> None:
    if not (ds_dir() / "dse.ldif").exists():
        log(f"creating 389-ds instance slapd-{INSTANCE} ({SUFFIX})")
        inf = STATE / "ds.inf"
        # systemd = False: dscreate would otherwise hand the instance to systemctl, which this
        # host does not run; start = False: ns-slapd is started below, by hand, like the KDC.
        inf.write_text(
            f"""[general]
full_machine_name = localhost
start = False
systemd = False
strict_host_checking = False

[slapd]
instance_name = {INSTANCE}
port = {PORTS["ldap"]}
secure_port = 1636
root_dn = {DM_DN}
root_password = {DM_PASSWORD}
self_sign_cert = False

[backend-userroot]
suffix = {SUFFIX}
sample_entries = no
create_suffix_entry = yes
"""
        )
        inf.chmod(0o600)
        # dscreate's systemd check: lib389 reads `with_systemd` from defaults.inf, found under
        # $PREFIX when set (how `dscreate ds-root` works). A copy that says 0 makes dscreate start
        # ns-slapd itself instead of calling systemctl; every path in it stays the system's.
        prefix = STATE / "ds-prefix"
        dflt = prefix / "share" / "dirsrv" / "inf" / "defaults.inf"
        dflt.parent.mkdir(parents=True, exist_ok=True)
        dflt.write_text(
            Path("/usr/share/dirsrv/inf/defaults.inf").read_text().replace("with_systemd = 1", "with_systemd = 0")
        )
        run(["dscreate", "from-file", str(inf)], env={**os.environ, "PREFIX": str(prefix)})
    ensure_schema()
    configure_dse(listen)
    pidfile = ds_pidfile()
    if not pid_alive(pidfile):
        log("starting ns-slapd")
        Path("/run/dirsrv").mkdir(exist_ok=True)
        shutil.chown("/run/dirsrv", "dirsrv", "dirsrv")
        Path("/run/lock/dirsrv/slapd-" + INSTANCE).mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/lock/dirsrv", "dirsrv", "dirsrv")
        shutil.chown("/run/lock/dirsrv/slapd-" + INSTANCE, "dirsrv", "dirsrv")
        run(["/usr/sbin/ns-slapd", "-D", str(ds_dir()), "-i", str(pidfile)])
    wait_port("127.0.0.1", PORTS["ldap"])


def configure_dse(listen: list[str]) -> None:
    """Offline cn=config edits: the listen address and the memberOf plugin (FreeIPA enables it).

    Only when a value differs: 389-ds rewrites dse.ldif in its own layout, so the text is
    compared value by value, and a running server is left alone when nothing changes.
    """
    dse = ds_dir() / "dse.ldif"
    text = dse.read_text()
    # single-valued in 389-ds: loopback here, the other addresses are relayed by the RPC peer
    wanted = {
        "dn: cn=config": {"nsslapd-listenhost": "127.0.0.1"},
        "dn: cn=memberof plugin,cn=plugins,cn=config": {
            "nsslapd-pluginenabled": "on",
            "memberofautoaddoc": "nsMemberOf",
        },
    }
    blocks, changed = [], False
    for block in text.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln]
        want = wanted.get(lines[0].lower()) if lines else None
        if want:
            have = {ln.split(":", 1)[0].lower(): ln.split(":", 1)[1].strip() for ln in lines[1:] if ":" in ln}
            if any(have.get(k, "").lower() != v.lower() for k, v in want.items()):
                changed = True
                lines = [ln for ln in lines if ln.split(":", 1)[0].lower() not in want]
                lines += [f"{k}: {v}" for k, v in want.items()]
        blocks.append("\n".join(lines))
    if changed:
        stop_pid(ds_pidfile(), "ns-slapd")
        dse.write_text("\n\n".join(blocks).rstrip("\n") + "\n")
        shutil.chown(dse, "dirsrv", "dirsrv")


def ldap_conn():
    from ldap3 import Connection, Server

    return Connection(
        Server("127.0.0.1", port=PORTS["ldap"]), DM_DN, DM_PASSWORD, auto_bind=True, raise_exceptions=False
    )


def ensure_entry(conn, dn: str, attrs: dict) -> bool:
    if conn.search(dn, "(objectClass=*)", search_scope="BASE"):
        return False
    oc = attrs.pop("objectClass")
    if not conn.add(dn, oc, attrs):
        raise RuntimeError(f"add {dn}: {conn.result['description']} {conn.result['message']}")
    return True


def seed_tree(platform: bool) -> None:
    """FreeIPA's containers, its admin and admins group, the platform's users, the bind account."""
    conn = ldap_conn()
    c = ["top", "nsContainer"]
    for dn in [
        "cn=accounts",
        "cn=users,cn=accounts",
        "cn=groups,cn=accounts",
        "cn=services,cn=accounts",
        "cn=computers,cn=accounts",
        "cn=hostgroups,cn=accounts",
        "cn=etc",
        "cn=sysaccounts,cn=etc",
        "cn=sudo",
        "cn=sudorules,cn=sudo",
        "cn=sudocmds,cn=sudo",
    ]:
        ensure_entry(conn, f"{dn},{SUFFIX}", {"objectClass": list(c), "cn": dn.split(",", maxsplit=1)[0][3:]})
    # FreeIPA's compat view of its sudo rules (slapi-nis): sudoRole entries that sssd's ldap sudo
    # provider and sudo-ldap read, kept by the JSON-RPC peer whenever a rule changes.
    sudo_read = (
        '(targetattr="objectClass || cn || sudoUser || sudoHost || sudoCommand || sudoRunAsUser || '
        "sudoRunAsGroup || sudoOption || sudoOrder || sudoNotBefore || sudoNotAfter || entryUSN || "
        'modifyTimestamp")(version 3.0; acl "Authenticated read of the sudo compat tree"; '
        'allow (read, search, compare) userdn = "ldap:///all";)'
    )
    ensure_entry(
        conn,
        f"ou=sudoers,{SUFFIX}",
        {"objectClass": ["top", "organizationalUnit"], "ou": "sudoers", "aci": sudo_read},
    )
    # Authenticated binds (the sssd bind account, FreeIPA's users) read the tree, never passwords.
    readable = (
        "objectClass || cn || uid || sn || givenName || displayName || gecos || uidNumber || gidNumber || "
        "homeDirectory || loginShell || mail || member || memberOf || description || ipaUniqueID || "
        "nsAccountLock || entryUSN || modifyTimestamp"
    )
    aci = f'(targetattr="{readable}")(version 3.0; acl "Authenticated read"; allow (read, search, compare) userdn = "ldap:///all";)'
    conn.modify(SUFFIX, {"aci": [("MODIFY_ADD", [aci])]})  # fails harmlessly once present

    everyone = {"admin": ADMIN, **USERS}
    for uid, spec in everyone.items():
        udn = f"uid={uid},cn=users,cn=accounts,{SUFFIX}"
        ensure_entry(
            conn,
            f"cn={uid},cn=groups,cn=accounts,{SUFFIX}",
            {
                "objectClass": ["top", "posixGroup", "mepManagedEntry"],
                "cn": uid,
                "gidNumber": spec["uidnumber"],
                "description": f"User private group for {uid}",
            },
        )
        ensure_entry(
            conn,
            udn,
            {
                "objectClass": ["top", "person", "organizationalPerson", "inetOrgPerson", "inetUser", "posixAccount"],
                "uid": uid,
                "cn": uid.capitalize(),
                "sn": uid.capitalize(),
                "givenName": uid.capitalize(),
                "uidNumber": spec["uidnumber"],
                "gidNumber": spec["uidnumber"],
                "homeDirectory": f"/home/{uid}",
                "loginShell": "/bin/bash",
                "mail": f"{uid}@{DOMAIN}",
                "userPassword": spec["password"],
            },
        )
    ensure_group(conn, "admins", 1000, "Account administrators group", ["admin", "dave"], [])
    ensure_group(conn, "ipausers", None, "Default group for all users", list(USERS), [])
    ensure_entry(
        conn,
        f"uid={SERVICE_ACCOUNT},cn=sysaccounts,cn=etc,{SUFFIX}",
        {
            "objectClass": ["top", "account", "simpleSecurityObject"],
            "uid": SERVICE_ACCOUNT,
            "userPassword": SERVICE_ACCOUNT_PASSWORD,
            "description": "Dask Gateway and sssd bind account",
        },
    )
    if platform:
        for name, spec in PLATFORM_GROUPS.items():
            ensure_group(conn, name, spec["gidnumber"], f"Dask platform group {name}", spec["users"], spec["groups"])
    conn.unbind()


def ensure_group(conn, name: str, gid: int | None, desc: str, users: list[str], groups: list[str]) -> None:
    dn = f"cn={name},cn=groups,cn=accounts,{SUFFIX}"
    oc = ["top", "groupOfNames", "nestedGroup", "ipaUserGroup", "ipaObject"]
    attrs: dict = {"objectClass": oc, "cn": name, "description": desc}
    if gid is not None:
        attrs["objectClass"] = [*oc, "posixGroup"]
        attrs["gidNumber"] = gid
    members = [f"uid={u},cn=users,cn=accounts,{SUFFIX}" for u in users]
    members += [f"cn={g},cn=groups,cn=accounts,{SUFFIX}" for g in groups]
    attrs["ipaUniqueID"] = f"seed-{name}"
    ensure_entry(conn, dn, attrs)
    for m in members:
        conn.modify(dn, {"member": [("MODIFY_ADD", [m])]})  # already there: harmless refusal


DN_SYNTAX = "EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12"
STRING_SYNTAX = "EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15"
# (name, DN-valued, single-valued) of the sudo attributes FreeIPA's schema adds.
SUDO_ATTRIBUTES = [
    ("memberUser", True, False),
    ("memberHost", True, False),
    ("userCategory", False, True),
    ("hostCategory", False, True),
    ("ipaEnabledFlag", False, True),
    ("externalUser", False, False),
    ("externalHost", False, False),
    ("memberAllowCmd", True, False),
    ("memberDenyCmd", True, False),
    ("cmdCategory", False, True),
    ("ipaSudoOpt", False, False),
    ("ipaSudoRunAs", True, False),
    ("ipaSudoRunAsExtUser", False, False),
    ("ipaSudoRunAsUserCategory", False, True),
    ("ipaSudoRunAsGroup", True, False),
    ("ipaSudoRunAsGroupCategory", False, True),
    ("sudoCmd", False, True),
]

FREEIPA_SCHEMA = "\n".join(
    [
        "dn: cn=schema",
        "attributeTypes: ( 2.16.840.1.113730.3.8.3.1 NAME 'ipaUniqueID' DESC 'Unique identifier' EQUALITY "
        "caseIgnoreMatch ORDERING caseIgnoreOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 X-ORIGIN 'IPA v2' )",
        "objectClasses: ( 2.16.840.1.113730.3.8.4.1 NAME 'ipaObject' DESC 'IPA objectclass' AUXILIARY "
        "MUST ( ipaUniqueID ) X-ORIGIN 'IPA v2' )",
        "objectClasses: ( 2.16.840.1.113730.3.8.4.2 NAME 'ipaUserGroup' DESC 'IPA user group object class' "
        "SUP top STRUCTURAL MAY ( description ) X-ORIGIN 'IPA v2' )",
        "objectClasses: ( 2.16.840.1.113730.3.8.4.3 NAME 'nestedGroup' DESC 'Group that supports nesting' "
        "SUP groupOfNames STRUCTURAL MAY memberOf X-ORIGIN 'IPA v2' )",
        # FreeIPA's sudo rules and commands (cn=sudorules / cn=sudocmds,cn=sudo), with the
        # attribute names FreeIPA uses; the OIDs are the peer's own (2.16.840.1.113730.3.8.99.*).
        *(
            f"attributeTypes: ( 2.16.840.1.113730.3.8.99.{n} NAME '{name}' DESC 'FreeIPA {name} (peer)' "
            f"{DN_SYNTAX if dn else STRING_SYNTAX}"
            f"{' SINGLE-VALUE' if single else ''} X-ORIGIN 'dataplatform identity peer' )"
            for n, (name, dn, single) in enumerate(SUDO_ATTRIBUTES, start=1)
        ),
        "objectClasses: ( 2.16.840.1.113730.3.8.99.100 NAME 'ipaAssociation' DESC 'FreeIPA association (peer)' "
        "SUP top ABSTRACT MUST ( ipaUniqueID $ cn ) MAY ( memberUser $ userCategory $ memberHost $ hostCategory $ "
        "ipaEnabledFlag $ description ) X-ORIGIN 'dataplatform identity peer' )",
        "objectClasses: ( 2.16.840.1.113730.3.8.99.101 NAME 'ipaSudoRule' DESC 'FreeIPA sudo rule (peer)' "
        "SUP ipaAssociation STRUCTURAL MAY ( externalUser $ externalHost $ memberAllowCmd $ memberDenyCmd $ "
        "cmdCategory $ ipaSudoOpt $ ipaSudoRunAs $ ipaSudoRunAsExtUser $ ipaSudoRunAsUserCategory $ "
        "ipaSudoRunAsGroup $ ipaSudoRunAsGroupCategory $ sudoOrder ) X-ORIGIN 'dataplatform identity peer' )",
        "objectClasses: ( 2.16.840.1.113730.3.8.99.102 NAME 'ipaSudoCmd' DESC 'FreeIPA sudo command (peer)' "
        "SUP top STRUCTURAL MUST ( ipaUniqueID $ sudoCmd ) MAY ( memberOf $ description ) "
        "X-ORIGIN 'dataplatform identity peer' )",
        "",
    ]
)


def ensure_schema() -> None:
    """The few FreeIPA object classes its groups carry (ipaObject, ipaUserGroup, nestedGroup)."""
    target = ds_dir() / "schema" / "99freeipa.ldif"
    if target.exists() and target.read_text() == FREEIPA_SCHEMA:
        return
    stop_pid(ds_pidfile(), "ns-slapd")
    target.write_text(FREEIPA_SCHEMA)
    shutil.chown(target, "dirsrv", "dirsrv")


# ---------------------------------------------------------------------------- JSON-RPC peer
def ensure_rpc(listen: list[str]) -> None:
    rdir = STATE / "rpc"
    rdir.mkdir(parents=True, exist_ok=True)
    pidfile = rdir / "rpc.pid"
    # A running peer started from other code (the checkout moved on) is restarted on it.
    code = hashlib.sha256(b"".join(Path(__file__).with_name(f).read_bytes() for f in RPC_CODE)).hexdigest()
    stamp = rdir / "rpc.code"
    if pid_alive(pidfile):
        if stamp.exists() and stamp.read_text() == code:
            return
        log("the JSON-RPC peer's code changed: restarting it")
        stop_pid(pidfile, "freeipa_rpc")
    stamp.write_text(code)
    log("starting the FreeIPA JSON-RPC peer")
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("freeipa_rpc.py")),
        "--state",
        str(STATE),
        "--port",
        str(PORTS["rpc"]),
        "--pidfile",
        str(pidfile),
    ]
    for a in listen:
        cmd += ["--listen", a]
        if a != "127.0.0.1":  # 389-ds listens on one address only: relay LDAP from the others
            cmd += ["--relay", f"{a}:{PORTS['ldap']}=127.0.0.1:{PORTS['ldap']}"]
    with (rdir / "rpc.log").open("ab") as out:
        subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=krb_env())
    for a in listen:
        wait_port(a, PORTS["rpc"])
        wait_port(a, PORTS["ldap"])


# ---------------------------------------------------------------------------- commands
def status() -> dict:
    saved = STATE / "listen.json"
    listen = json.loads(saved.read_text()) if saved.exists() else []
    running = {
        "krb5kdc": bool(pid_alive(STATE / "krb5" / "krb5kdc.pid")),
        "kadmind": bool(pid_alive(STATE / "krb5" / "kadmind.pid")),
        "ns-slapd": bool(pid_alive(ds_pidfile())),
        "freeipa_rpc": bool(pid_alive(STATE / "rpc" / "rpc.pid")),
    }
    return {
        "running": running,
        "listen": listen,
        "realm": REALM,
        "domain": DOMAIN,
        "suffix": SUFFIX,
        "ports": PORTS,
        "ca": str(STATE / "tls" / "ca.crt"),
        "krb5_conf": str(STATE / "krb5" / "krb5.conf"),
        "ldap_uri": [f"ldap://{a}:{PORTS['ldap']}" for a in listen],
        "rpc_url": [f"https://{a}:{PORTS['rpc']}/ipa" for a in listen],
        "admin": {"user": "admin", "password": ADMIN["password"]},
        "users": {u: {"password": s["password"], "groups": s["groups"]} for u, s in USERS.items()},
        "enroll": {"principal": f"{ENROLL_PRINCIPAL}@{REALM}", "password": ENROLL_PASSWORD},
        "bind": {"dn": f"uid={SERVICE_ACCOUNT},cn=sysaccounts,cn=etc,{SUFFIX}", "password": SERVICE_ACCOUNT_PASSWORD},
    }


def stop() -> None:
    stop_pid(STATE / "rpc" / "rpc.pid", "freeipa_rpc")
    stop_pid(ds_pidfile(), "ns-slapd")
    stop_pid(STATE / "krb5" / "kadmind.pid", "kadmind")
    stop_pid(STATE / "krb5" / "krb5kdc.pid", "krb5kdc")


def start(listen: list[str], platform: bool) -> dict:
    missing = [b for b in ("krb5kdc", "kadmind", "kdb5_util", "dscreate", "ns-slapd") if not shutil.which(b)]
    if missing and not Path("/usr/sbin/ns-slapd").exists():
        raise SystemExit(f"missing {missing}: run scripts/bootstrap-host.sh --identity")
    if "0.0.0.0" in listen:
        raise SystemExit("the identity peer never binds to 0.0.0.0: name the addresses to listen on")
    STATE.mkdir(parents=True, exist_ok=True)
    saved = STATE / "listen.json"
    before = json.loads(saved.read_text()) if saved.exists() else []
    # Addresses asked for before stay (another consumer may use them) while the host still has
    # them: a docker network that was removed and made again comes back with another gateway.
    listen = sorted({"127.0.0.1", *listen, *(a for a in before if is_local(a))})
    if listen != before:
        if before:
            log(f"listen addresses change {before} -> {listen}: restarting")
        stop()
        saved.write_text(json.dumps(listen))
    write_krb5(listen)
    ensure_kdc(listen)
    ensure_ds(listen)
    seed_tree(platform)
    ensure_rpc(listen)
    return status()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["start", "stop", "status", "krb5-conf"])
    p.add_argument("--listen", action="append", default=[], help="an address to listen on besides 127.0.0.1")
    p.add_argument("--platform", action="store_true", help="also seed the platform groups and memberships")
    p.add_argument("--address", default="127.0.0.1", help="krb5-conf: the address clients reach the KDC on")
    args = p.parse_args()
    if args.action == "stop":
        stop()
        return 0
    if args.action == "krb5-conf":
        print(client_krb5_conf(args.address), end="")
        return 0
    t0 = time.monotonic()
    if args.action == "start":
        # Parallel test workers start the one peer: the first starts it, the others reuse it.
        STATE.mkdir(parents=True, exist_ok=True)
        with (STATE / "start.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            info = start(args.listen, args.platform)
        log(f"ready in {time.monotonic() - t0:.1f} s")
    else:
        info = status()
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
