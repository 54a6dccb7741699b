"""A FreeIPA JSON-RPC peer that behaves like the real server on the calls the collection makes.

Started by tests/peers/identity.py (which runs the KDC and 389-ds it writes through to):

- HTTPS only, with its own CA (<state>/tls/ca.crt); the server certificate names every listen
  address, `localhost` and `ipa.dataplatform.test`;
- POST /ipa/session/login_password (form `user`, `password`) checks the password with an LDAP
  bind and sets the `ipa_session` cookie; a refusal is 401 with `X-IPA-Rejection-Reason`;
- POST /ipa/session/json takes `{"method", "params": [args, options]}`, needs a session (401)
  and a Referer under https://<host>/ipa (400), refuses another API major version (901) and
  unknown options (3005), and answers in FreeIPA's envelope: `{"result": {"result", "value",
  "summary"}, "error", "id", "principal", "version"}` with list-valued attributes and `dn`;
- errors carry FreeIPA's codes and names: 4001 NotFound, 4002 DuplicateEntry, 3009
  ValidationError, 3005 OptionError, 2100 ACIError, 4202 EmptyModlist, 4309 ProtectedEntryError;
- `*_add_member`/`*_remove_member` report through `completed`/`failed`, never raise;
- groups and system accounts are entries in 389-ds (what sssd and LDAP clients see), hosts and
  services are principals in the KDC (so a service made here can get a keytab);
- sudo rules and commands are FreeIPA's entries in cn=sudorules / cn=sudocmds,cn=sudo, and every
  change rewrites the rule's sudoRole in ou=sudoers (FreeIPA's compat view, what sssd's ldap sudo
  provider reads); users and hosts FreeIPA does not know become external ones, as in FreeIPA.

Only members of `admins` may write (as with FreeIPA's default ACIs); anyone may read.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from ldap3 import BASE, LEVEL, MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, Connection, Server

import identity  # beside this file: identity.py runs this one as a script, its folder is sys.path[0]

API_VERSION = "2.254"
SERVER_VERSION = "4.12.2"
SUFFIX = identity.SUFFIX
REALM = identity.REALM
USERS_DN = f"cn=users,cn=accounts,{SUFFIX}"
GROUPS_DN = f"cn=groups,cn=accounts,{SUFFIX}"
SYSACCOUNTS_DN = f"cn=sysaccounts,cn=etc,{SUFFIX}"
SERVICES_DN = f"cn=services,cn=accounts,{SUFFIX}"
GROUP_NAME = re.compile(r"^[a-zA-Z0-9_.][a-zA-Z0-9_.-]{0,253}[a-zA-Z0-9_.$-]?$")
PROTECTED_GROUPS = {"admins", "ipausers", "editors", "trust admins"}
COMMON = {"version", "all", "raw", "no_members", "rights"}
LOCK = threading.Lock()


class IPAError(Exception):
    def __init__(self, code: int, name: str, message: str):
        super().__init__(message)
        self.code, self.name, self.message = code, name, message


def not_found(key: str, what: str) -> IPAError:
    return IPAError(4001, "NotFound", f"{key}: {what} not found")


# ---------------------------------------------------------------------------- TLS
def ensure_tls(state: Path, listen: list[str]) -> tuple[Path, Path]:
    """A CA of the peer's own and a server certificate naming every listen address."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    tls = state / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_crt, ca_key = tls / "ca.crt", tls / "ca.key"
    if not ca_crt.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Certificate Authority {REALM}")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        ca_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        ca_key.chmod(0o600)
        ca_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    srv_crt, srv_key = tls / "server.crt", tls / "server.key"
    names = sorted(set(listen))
    marker = tls / "server.names"
    if srv_crt.exists() and marker.exists() and marker.read_text() == ",".join(names):
        return srv_crt, srv_key
    ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    ca_private = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.DNSName(f"ipa.{identity.DOMAIN}")]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ipa.{identity.DOMAIN}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_private, hashes.SHA256())
    )
    srv_key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    srv_key.chmod(0o600)
    srv_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_crt.read_bytes())
    marker.write_text(",".join(names))
    return srv_crt, srv_key


# ---------------------------------------------------------------------------- the directory
class Directory:
    """389-ds as Directory Manager (what FreeIPA's framework does on the caller's behalf) and the KDC."""

    def __init__(self) -> None:
        self.server = Server("127.0.0.1", port=identity.PORTS["ldap"])

    def conn(self) -> Connection:
        return Connection(self.server, identity.DM_DN, identity.DM_PASSWORD, auto_bind=True)

    def check_password(self, uid: str, password: str) -> bool:
        c = Connection(self.server, f"uid={uid},{USERS_DN}", password)
        ok = bool(password) and c.bind()
        c.unbind()
        return ok

    def entry(self, c: Connection, dn: str, attrs=("*", "+")) -> dict | None:
        if not c.search(dn, "(objectClass=*)", BASE, attributes=list(attrs)):
            return None
        return {k.lower(): v for k, v in c.entries[0].entry_attributes_as_dict.items()}

    def kadmin(self, query: str) -> str:
        res = subprocess.run(
            ["kadmin.local", "-r", REALM, "-q", query],
            env=identity.krb_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0 or "error" in res.stderr.lower():
            raise IPAError(4203, "DatabaseError", f"kadmin: {res.stderr.strip()}")
        return res.stdout

    def principal(self, name: str) -> dict | None:
        out = self.kadmin(f"getprinc {name}")
        if "Principal:" not in out:
            return None
        keys = re.search(r"Number of keys: (\d+)", out)
        return {"keys": int(keys.group(1)) if keys else 0}


DIR = Directory()


def rdn_value(dn: str) -> str:
    return dn.split(",", 1)[0].split("=", 1)[1]


def is_admin(uid: str) -> bool:
    c = DIR.conn()
    e = DIR.entry(c, f"uid={uid},{USERS_DN}", ["memberOf"])
    c.unbind()
    return bool(e) and f"cn=admins,{GROUPS_DN}".lower() in [m.lower() for m in e.get("memberof", [])]


# ---------------------------------------------------------------------------- groups
def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS_DN}"


def check_group_name(cn) -> str:
    if not isinstance(cn, str) or not GROUP_NAME.match(cn):
        raise IPAError(
            3009, "ValidationError", "invalid 'group_name': may only include letters, numbers, _, -, . and $"
        )
    return cn.lower()


def load_group(c: Connection, cn: str) -> dict:
    e = DIR.entry(c, group_dn(cn))
    if not e or "groupofnames" not in [o.lower() for o in e.get("objectclass", [])]:
        raise not_found(cn, "group")
    return e


def group_view(c: Connection, cn: str, options: dict) -> dict:
    e = load_group(c, cn)
    out: dict = {"dn": group_dn(cn), "cn": [cn]}
    if e.get("description"):
        out["description"] = [e["description"][0]]
    if e.get("gidnumber"):
        out["gidnumber"] = [str(e["gidnumber"][0])]
    if options.get("all"):
        out["objectclass"] = [o.lower() for o in e["objectclass"]]
        out["ipauniqueid"] = list(e.get("ipauniqueid", []))
    if not options.get("no_members"):
        users, groups = [], []
        for m in e.get("member", []):
            (users if m.lower().endswith(USERS_DN.lower()) else groups).append(rdn_value(m))
        if users:
            out["member_user"] = sorted(users)
        if groups:
            out["member_group"] = sorted(groups)
        ind_u, ind_g = indirect_members(c, groups, set())
        if ind_u - set(users):
            out["memberindirect_user"] = sorted(ind_u - set(users))
        if ind_g - set(groups):
            out["memberindirect_group"] = sorted(ind_g - set(groups))
        parents = [rdn_value(m) for m in e.get("memberof", []) if m.lower().endswith(GROUPS_DN.lower())]
        if parents:
            out["memberof_group"] = sorted(parents)
    return out


def indirect_members(c: Connection, groups: list[str], seen: set) -> tuple[set, set]:
    users, subgroups = set(), set()
    for g in groups:
        if g in seen:
            continue
        seen.add(g)
        e = DIR.entry(c, group_dn(g), ["member"]) or {}
        for m in e.get("member", []):
            if m.lower().endswith(USERS_DN.lower()):
                users.add(rdn_value(m))
            else:
                subgroups.add(rdn_value(m))
        u, s = indirect_members(
            c, [rdn_value(m) for m in e.get("member", []) if not m.lower().endswith(USERS_DN.lower())], seen
        )
        users |= u
        subgroups |= s
    return users, subgroups


def next_gid(c: Connection) -> int:
    c.search(GROUPS_DN, "(gidNumber=*)", LEVEL, attributes=["gidNumber"])
    used = [int(e.gidNumber.value) for e in c.entries if int(e.gidNumber.value) >= 200000]
    return max(used, default=199999) + 1


def group_add(c, args, o):
    cn = check_group_name(args[0])
    if DIR.entry(c, group_dn(cn), ["cn"]):
        raise IPAError(4002, "DuplicateEntry", f'group with name "{cn}" already exists')
    if o.get("nonposix") and o.get("gidnumber"):
        raise IPAError(3009, "ValidationError", "invalid 'gid': cannot be set for a non-POSIX group")
    oc = ["top", "groupOfNames", "nestedGroup", "ipaUserGroup", "ipaObject"]
    attrs = {"cn": cn, "ipaUniqueID": secrets.token_hex(16)}
    if o.get("description"):
        attrs["description"] = o["description"]
    if not o.get("nonposix"):
        oc.append("posixGroup")
        attrs["gidNumber"] = int(o.get("gidnumber") or next_gid(c))
    c.add(group_dn(cn), oc, attrs)
    return {"result": group_view(c, cn, o), "value": cn, "summary": f'Added group "{cn}"'}


def group_mod(c, args, o):
    cn = check_group_name(args[0])
    e = load_group(c, cn)
    changes = {}
    if "description" in o:
        new = o["description"]
        old = e.get("description", [None])[0] if e.get("description") else None
        if new != old:
            changes["description"] = [(MODIFY_REPLACE, [new] if new else [])]
    posix = "posixgroup" in [x.lower() for x in e["objectclass"]]
    if o.get("posix"):
        if posix:
            raise IPAError(4007, "AlreadyPosixGroup", "This is already a posix group")
        changes["objectClass"] = [(MODIFY_ADD, ["posixGroup"])]
        changes["gidNumber"] = [(MODIFY_REPLACE, [int(o.get("gidnumber") or next_gid(c))])]
    elif o.get("gidnumber") is not None and str(o["gidnumber"]) != str(e.get("gidnumber", [""])[0]):
        if not posix:
            raise IPAError(3009, "ValidationError", "invalid 'gid': cannot be set for a non-POSIX group")
        changes["gidNumber"] = [(MODIFY_REPLACE, [int(o["gidnumber"])])]
    if not changes:
        raise IPAError(4202, "EmptyModlist", "no modifications to be performed")
    c.modify(group_dn(cn), changes)
    return {"result": group_view(c, cn, o), "value": cn, "summary": f'Modified group "{cn}"'}


def group_del(c, args, o):
    names = args[0] if isinstance(args[0], list) else [args[0]]
    for raw in names:
        cn = check_group_name(raw)
        load_group(c, cn)
        if cn in PROTECTED_GROUPS:
            raise IPAError(4309, "ProtectedEntryError", f"group {cn} cannot be deleted/modified: privileged group")
        c.delete(group_dn(cn))
    return {"result": {"failed": []}, "value": names, "summary": f'Deleted group "{",".join(names)}"'}


def group_show(c, args, o):
    cn = check_group_name(args[0])
    return {"result": group_view(c, cn, o), "value": cn, "summary": None}


def group_find(c, args, o):
    crit = (args[0] if args else "") or ""
    c.search(GROUPS_DN, "(objectClass=groupOfNames)", LEVEL, attributes=["cn"])
    names = sorted(str(e.cn.value) for e in c.entries if crit.lower() in str(e.cn.value).lower())
    if o.get("cn"):
        names = [n for n in names if n == o["cn"].lower()]
    res = [group_view(c, n, o) for n in names]
    return {"result": res, "count": len(res), "truncated": False, "summary": f"{len(res)} groups matched"}


def _member_change(c, args, o, add: bool):
    cn = check_group_name(args[0])
    e = load_group(c, cn)
    current = {m.lower() for m in e.get("member", [])}
    failed: dict = {"member": {"user": [], "group": [], "service": [], "idoverrideuser": []}}
    completed, mods = 0, []
    for kind, base, attr in (("user", USERS_DN, "uid"), ("group", GROUPS_DN, "cn")):
        items = o.get(kind) or []
        for name in items if isinstance(items, list) else [items]:
            dn = f"{attr}={name},{base}"
            exists = DIR.entry(c, dn, ["objectClass"])
            if not exists or (kind == "group" and "groupofnames" not in [x.lower() for x in exists["objectclass"]]):
                failed["member"][kind].append([name, "no such entry"])
            elif add and dn.lower() in current:
                failed["member"][kind].append([name, "This entry is already a member"])
            elif not add and dn.lower() not in current:
                failed["member"][kind].append([name, "This entry is not a member"])
            elif kind == "group" and name.lower() == cn:
                failed["member"][kind].append([name, "A group may not be a member of itself"])
            else:
                mods.append(dn)
                completed += 1
    if mods:
        c.modify(group_dn(cn), {"member": [(MODIFY_ADD if add else MODIFY_DELETE, mods)]})
    return {"result": group_view(c, cn, o), "failed": failed, "completed": completed}


def group_add_member(c, args, o):
    return _member_change(c, args, o, True)


def group_remove_member(c, args, o):
    return _member_change(c, args, o, False)


# ---------------------------------------------------------------------------- users
def user_show(c, args, o):
    uid = args[0]
    e = DIR.entry(c, f"uid={uid},{USERS_DN}")
    if not e:
        raise not_found(uid, "user")
    out = {
        "dn": f"uid={uid},{USERS_DN}",
        "uid": [uid],
        "krbprincipalname": [f"{uid}@{REALM}"],
        "nsaccountlock": False,
        "has_password": True,
        "has_keytab": True,
    }
    for k in ("givenname", "sn", "cn", "mail", "homedirectory", "loginshell"):
        if e.get(k):
            out[k] = [str(v) for v in e[k]]
    for k in ("uidnumber", "gidnumber"):
        if e.get(k):
            out[k] = [str(e[k][0])]
    out["memberof_group"] = sorted(rdn_value(m) for m in e.get("memberof", []) if m.lower().endswith(GROUPS_DN.lower()))
    return {"result": out, "value": uid, "summary": None}


# ---------------------------------------------------------------------------- system accounts
def sysaccount_dn(uid: str) -> str:
    return f"uid={uid},{SYSACCOUNTS_DN}"


def sysaccount_view(c, uid: str) -> dict:
    e = DIR.entry(c, sysaccount_dn(uid))
    if not e:
        raise not_found(uid, "system account")
    out = {
        "dn": sysaccount_dn(uid),
        "uid": [uid],
        "has_password": bool(e.get("userpassword")),
        "nsaccountlock": str(e.get("nsaccountlock", ["FALSE"])[0]).upper() == "TRUE",
    }
    if e.get("description"):
        out["description"] = [e["description"][0]]
    return out


def check_uid(uid) -> str:
    if not isinstance(uid, str) or not re.match(r"^[a-zA-Z0-9_.][a-zA-Z0-9_.-]{0,253}[a-zA-Z0-9_.$-]?$", uid):
        raise IPAError(3009, "ValidationError", "invalid 'login': may only include letters, numbers, _, -, . and $")
    return uid.lower()


def sysaccount_show(c, args, o):
    uid = check_uid(args[0])
    return {"result": sysaccount_view(c, uid), "value": uid, "summary": None}


def sysaccount_add(c, args, o):
    uid = check_uid(args[0])
    if DIR.entry(c, sysaccount_dn(uid), ["uid"]):
        raise IPAError(4002, "DuplicateEntry", f'system account with name "{uid}" already exists')
    attrs: dict = {"uid": uid}
    random = None
    if o.get("random"):
        random = secrets.token_urlsafe(18)
        attrs["userPassword"] = random
    elif o.get("userpassword"):
        attrs["userPassword"] = o["userpassword"]
    else:
        raise IPAError(3007, "RequirementError", "'userpassword' or 'random' is required")
    if o.get("description"):
        attrs["description"] = o["description"]
    if o.get("nsaccountlock"):
        attrs["nsAccountLock"] = "TRUE"
    c.add(sysaccount_dn(uid), ["top", "account", "simpleSecurityObject", "inetUser"], attrs)
    view = sysaccount_view(c, uid)
    if random:
        view["randompassword"] = random
    return {"result": view, "value": uid, "summary": f'Added system account "{uid}"'}


def sysaccount_mod(c, args, o):
    uid = check_uid(args[0])
    e = DIR.entry(c, sysaccount_dn(uid))
    if not e:
        raise not_found(uid, "system account")
    changes = {}
    random = None
    if "description" in o and o["description"] != (e.get("description") or [None])[0]:
        changes["description"] = [(MODIFY_REPLACE, [o["description"]] if o["description"] else [])]
    if o.get("random"):
        random = secrets.token_urlsafe(18)
        changes["userPassword"] = [(MODIFY_REPLACE, [random])]
    elif o.get("userpassword"):
        changes["userPassword"] = [(MODIFY_REPLACE, [o["userpassword"]])]
    if "nsaccountlock" in o:
        locked = str(e.get("nsaccountlock", ["FALSE"])[0]).upper() == "TRUE"
        if bool(o["nsaccountlock"]) != locked:
            changes["nsAccountLock"] = [(MODIFY_REPLACE, ["TRUE"] if o["nsaccountlock"] else [])]
    if not changes:
        raise IPAError(4202, "EmptyModlist", "no modifications to be performed")
    c.modify(sysaccount_dn(uid), changes)
    view = sysaccount_view(c, uid)
    if random:
        view["randompassword"] = random
    return {"result": view, "value": uid, "summary": f'Modified system account "{uid}"'}


def sysaccount_del(c, args, o):
    names = args[0] if isinstance(args[0], list) else [args[0]]
    for raw in names:
        uid = check_uid(raw)
        if not DIR.entry(c, sysaccount_dn(uid), ["uid"]):
            raise not_found(uid, "system account")
        c.delete(sysaccount_dn(uid))
    return {"result": {"failed": []}, "value": names, "summary": f'Deleted system account "{",".join(names)}"'}


# ---------------------------------------------------------------------------- hosts and services
STORE_LOCK = threading.Lock()


def store_path() -> Path:
    return identity.STATE / "rpc" / "services.json"


def load_store() -> dict:
    p = store_path()
    return json.loads(p.read_text()) if p.exists() else {}


def save_store(data: dict) -> None:
    store_path().write_text(json.dumps(data, indent=1, sort_keys=True))


def normalize_principal(name) -> tuple[str, str, str]:
    if not isinstance(name, str) or "/" not in name:
        raise IPAError(3009, "ValidationError", "invalid 'canonical_principal': Service principal is required")
    base, _at, realm = name.partition("@")
    realm = realm or REALM
    if realm != REALM:
        raise IPAError(
            3009, "ValidationError", f"invalid 'canonical_principal': realm {realm} is not the server's realm"
        )
    service, _slash, host = base.partition("/")
    if not service or not host or "/" in host:
        raise IPAError(3009, "ValidationError", "invalid 'canonical_principal': Service principal is required")
    return f"{service}/{host.lower()}@{REALM}", service, host.lower()


def host_exists(fqdn: str) -> bool:
    return DIR.principal(f"host/{fqdn}@{REALM}") is not None


def host_show(c, args, o):
    fqdn = str(args[0]).lower()
    p = DIR.principal(f"host/{fqdn}@{REALM}")
    if not p:
        raise not_found(fqdn, "host")
    return {
        "result": {
            "dn": f"fqdn={fqdn},cn=computers,cn=accounts,{SUFFIX}",
            "fqdn": [fqdn],
            "krbprincipalname": [f"host/{fqdn}@{REALM}"],
            "has_keytab": p["keys"] > 0,
        },
        "value": fqdn,
        "summary": None,
    }


def host_add(c, args, o):
    fqdn = str(args[0]).lower()
    if host_exists(fqdn):
        raise IPAError(4002, "DuplicateEntry", f'host with name "{fqdn}" already exists')
    DIR.kadmin(f"addprinc -nokey host/{fqdn}@{REALM}")
    return {**host_show(c, [fqdn], o), "summary": f'Added host "{fqdn}"'}


def service_view(principal: str) -> dict:
    p = DIR.principal(principal)
    store = load_store()
    if not p or principal not in store:
        raise not_found(principal, "service")
    out = {
        "dn": f"krbprincipalname={principal},{SERVICES_DN}",
        "krbprincipalname": [principal],
        "krbcanonicalname": [principal],
        "has_keytab": p["keys"] > 0,
    }
    if store[principal].get("managedby"):
        out["managedby_host"] = sorted(store[principal]["managedby"])
    return out


def service_show(c, args, o):
    principal = normalize_principal(args[0])[0]
    return {"result": service_view(principal), "value": principal, "summary": None}


def service_add(c, args, o):
    principal, _service, host = normalize_principal(args[0])
    with STORE_LOCK:
        store = load_store()
        if principal in store or DIR.principal(principal):
            raise IPAError(4002, "DuplicateEntry", f'service with name "{principal}" already exists')
        if not o.get("skip_host_check") and not host_exists(host):
            raise IPAError(4001, "NotFound", f"The host '{host}' does not exist to add a service to.")
        DIR.kadmin(f"addprinc -nokey {principal}")
        store[principal] = {"managedby": [host] if host_exists(host) else []}
        save_store(store)
    return {"result": service_view(principal), "value": principal, "summary": f'Added service "{principal}"'}


def service_del(c, args, o):
    names = args[0] if isinstance(args[0], list) else [args[0]]
    with STORE_LOCK:
        store = load_store()
        for name in names:
            principal = normalize_principal(name)[0]
            if principal not in store:
                raise not_found(principal, "service")
            DIR.kadmin(f"delprinc -force {principal}")
            store.pop(principal)
        save_store(store)
    return {"result": {"failed": []}, "value": names, "summary": f'Deleted service "{",".join(names)}"'}


def _service_hosts(c, args, o, add: bool):
    principal = normalize_principal(args[0])[0]
    failed: dict = {"managedby": {"host": []}}
    completed = 0
    with STORE_LOCK:
        store = load_store()
        if principal not in store:
            raise not_found(principal, "service")
        managed = set(store[principal].get("managedby", []))
        hosts = o.get("host") or []
        for raw in hosts if isinstance(hosts, list) else [hosts]:
            h = raw.lower()
            if not host_exists(h):
                failed["managedby"]["host"].append([h, "no such entry"])
            elif add == (h in managed):
                failed["managedby"]["host"].append(
                    [h, "This entry is already a member" if add else "This entry is not a member"]
                )
            else:
                (managed.add if add else managed.discard)(h)
                completed += 1
        store[principal]["managedby"] = sorted(managed)
        save_store(store)
    return {"result": service_view(principal), "failed": failed, "completed": completed}


def service_add_host(c, args, o):
    return _service_hosts(c, args, o, True)


def service_remove_host(c, args, o):
    return _service_hosts(c, args, o, False)


# ---------------------------------------------------------------------------- host groups
def hostgroup_view(c: Connection, cn: str) -> dict:
    e = DIR.entry(c, f"cn={cn},cn=hostgroups,cn=accounts,{SUFFIX}")
    if not e:
        raise not_found(cn, "host group")
    out: dict = {"dn": f"cn={cn},cn=hostgroups,cn=accounts,{SUFFIX}", "cn": [cn]}
    if e.get("description"):
        out["description"] = [e["description"][0]]
    return out


def hostgroup_show(c, args, o):
    cn = check_group_name(args[0])
    return {"result": hostgroup_view(c, cn), "value": cn, "summary": None}


def hostgroup_add(c, args, o):
    cn = check_group_name(args[0])
    dn = f"cn={cn},cn=hostgroups,cn=accounts,{SUFFIX}"
    if DIR.entry(c, dn, ["cn"]):
        raise IPAError(4002, "DuplicateEntry", f'host group with name "{cn}" already exists')
    attrs = {"cn": cn, "ipaUniqueID": secrets.token_hex(16)}
    if o.get("description"):
        attrs["description"] = o["description"]
    c.add(dn, ["top", "groupOfNames", "nestedGroup", "ipaObject"], attrs)
    return {"result": hostgroup_view(c, cn), "value": cn, "summary": f'Added hostgroup "{cn}"'}


# ---------------------------------------------------------------------------- sudo rules and commands
SUDORULES_DN = f"cn=sudorules,cn=sudo,{SUFFIX}"
SUDOCMDS_DN = f"cn=sudocmds,cn=sudo,{SUFFIX}"
SUDOERS_DN = f"ou=sudoers,{SUFFIX}"
HOSTS_DN = f"cn=computers,cn=accounts,{SUFFIX}"
HOSTGROUPS_DN = f"cn=hostgroups,cn=accounts,{SUFFIX}"
RULE_NAME = re.compile(r"^[^,=+<>#;\\\"]{1,255}$")


def _ldap_escape(value: str) -> str:
    return "".join(f"\\{ord(ch):02x}" if ch in "*()\\\x00" else ch for ch in value)


def _ok(c: Connection, what: str) -> None:
    if c.result.get("result", 0) != 0:
        raise IPAError(4203, "DatabaseError", f"{what}: {c.result.get('description')} {c.result.get('message')}")


def sudocmd_entry(c: Connection, cmd: str) -> dict | None:
    c.search(SUDOCMDS_DN, f"(&(objectClass=ipaSudoCmd)(sudoCmd={_ldap_escape(cmd)}))", LEVEL, attributes=["*"])
    for e in c.entries:
        if str(e.sudoCmd.value) == cmd:
            return {"dn": e.entry_dn, **{k.lower(): v for k, v in e.entry_attributes_as_dict.items()}}
    return None


def sudocmd_view(e: dict) -> dict:
    out = {"dn": e["dn"], "sudocmd": [e["sudocmd"][0]], "ipauniqueid": [e["ipauniqueid"][0]]}
    if e.get("description"):
        out["description"] = [e["description"][0]]
    return out


def check_sudocmd(cmd) -> str:
    if not isinstance(cmd, str) or not cmd.strip():
        raise IPAError(3009, "ValidationError", "invalid 'command': must not be empty")
    return cmd


def sudocmd_show(c, args, o):
    cmd = check_sudocmd(args[0])
    e = sudocmd_entry(c, cmd)
    if not e:
        raise not_found(cmd, "sudo command")
    return {"result": sudocmd_view(e), "value": cmd, "summary": None}


def sudocmd_add(c, args, o):
    cmd = check_sudocmd(args[0])
    if sudocmd_entry(c, cmd):
        raise IPAError(4002, "DuplicateEntry", f'sudo command with name "{cmd}" already exists')
    uid = secrets.token_hex(16)
    attrs = {"sudoCmd": cmd, "ipaUniqueID": uid}
    if o.get("description"):
        attrs["description"] = o["description"]
    c.add(f"ipaUniqueID={uid},{SUDOCMDS_DN}", ["top", "ipaSudoCmd", "ipaObject"], attrs)
    _ok(c, f"add sudo command {cmd}")
    return {"result": sudocmd_view(sudocmd_entry(c, cmd)), "value": cmd, "summary": f'Added Sudo Command "{cmd}"'}


def sudocmd_del(c, args, o):
    names = args[0] if isinstance(args[0], list) else [args[0]]
    for cmd in names:
        e = sudocmd_entry(c, check_sudocmd(cmd))
        if not e:
            raise not_found(cmd, "sudo command")
        c.search(SUDORULES_DN, f"(|(memberAllowCmd={e['dn']})(memberDenyCmd={e['dn']}))", LEVEL, attributes=["cn"])
        if c.entries:
            raise IPAError(
                4307, "DependentEntry", f"{cmd} cannot be deleted because sudorule {c.entries[0].cn.value} requires it"
            )
        c.delete(e["dn"])
    return {"result": {"failed": []}, "value": names, "summary": f'Deleted Sudo Command "{",".join(names)}"'}


def check_rule_name(cn) -> str:
    if not isinstance(cn, str) or not RULE_NAME.match(cn):
        raise IPAError(3009, "ValidationError", "invalid 'sudorule_name': may not contain , = + < > # ; \\ or \"")
    return cn


def sudorule_entry(c: Connection, cn: str) -> dict | None:
    c.search(SUDORULES_DN, f"(&(objectClass=ipaSudoRule)(cn={_ldap_escape(cn)}))", LEVEL, attributes=["*"])
    for e in c.entries:
        if str(e.cn.value).lower() == cn.lower():
            return {"dn": e.entry_dn, **{k.lower(): v for k, v in e.entry_attributes_as_dict.items()}}
    return None


def load_sudorule(c: Connection, cn: str) -> dict:
    e = sudorule_entry(c, check_rule_name(cn))
    if not e:
        raise not_found(cn, "sudo rule")
    return e


def _split_members(dns) -> dict[str, list[str]]:
    """memberUser/ipaSudoRunAs/memberHost DNs -> {"user": [...], "group": [...], "host": [...], "hostgroup": [...]}."""
    out: dict[str, list[str]] = {"user": [], "group": [], "host": [], "hostgroup": []}
    for dn in dns or []:
        low = dn.lower()
        for kind, base in (("user", USERS_DN), ("group", GROUPS_DN), ("host", HOSTS_DN), ("hostgroup", HOSTGROUPS_DN)):
            if low.endswith(base.lower()):
                out[kind].append(rdn_value(dn))
    return {k: sorted(v) for k, v in out.items()}


def _cmd_names(c: Connection, dns) -> list[str]:
    names = []
    for dn in dns or []:
        e = DIR.entry(c, dn, ["sudoCmd"])
        if e and e.get("sudocmd"):
            names.append(e["sudocmd"][0])
    return sorted(names)


def sudorule_view(c: Connection, e: dict) -> dict:
    out: dict = {
        "dn": e["dn"],
        "cn": [e["cn"][0]],
        "ipaenabledflag": [str(e.get("ipaenabledflag", ["TRUE"])[0]).upper() == "TRUE"],
    }
    for attr in (
        "description",
        "usercategory",
        "hostcategory",
        "cmdcategory",
        "ipasudorunasusercategory",
        "ipasudorunasgroupcategory",
    ):
        if e.get(attr):
            out[attr] = [e[attr][0]]
    for attr in ("externaluser", "externalhost", "ipasudorunasextuser", "ipasudoopt"):
        if e.get(attr):
            out[attr] = sorted(str(v) for v in e[attr])
    if e.get("sudoorder"):
        out["sudoorder"] = [str(e["sudoorder"][0])]
    for attr, prefix in (("memberuser", "memberuser"), ("memberhost", "memberhost"), ("ipasudorunas", "ipasudorunas")):
        for kind, names in _split_members(e.get(attr)).items():
            if names:
                out[f"{prefix}_{kind}"] = names
    groups = _split_members(e.get("ipasudorunasgroup"))["group"]
    if groups:
        out["ipasudorunasgroup_group"] = groups
    for attr, key in (("memberallowcmd", "memberallowcmd_sudocmd"), ("memberdenycmd", "memberdenycmd_sudocmd")):
        names = _cmd_names(c, e.get(attr))
        if names:
            out[key] = names
    return out


def write_compat(c: Connection, e: dict | None, cn: str) -> None:
    """The rule's sudoRole in ou=sudoers (FreeIPA's compat plugin): what sssd's ldap sudo provider reads."""
    dn = f"cn={cn},{SUDOERS_DN}"
    if DIR.entry(c, dn, ["cn"]):
        c.delete(dn)
    if e is None or str(e.get("ipaenabledflag", ["TRUE"])[0]).upper() != "TRUE":
        return
    v = sudorule_view(c, e)
    users = ["ALL"] if v.get("usercategory") else []
    users += v.get("memberuser_user", []) + [f"%{g}" for g in v.get("memberuser_group", [])] + v.get("externaluser", [])
    hosts = ["ALL"] if v.get("hostcategory") else []
    hosts += (
        v.get("memberhost_host", []) + [f"+{g}" for g in v.get("memberhost_hostgroup", [])] + v.get("externalhost", [])
    )
    commands = ["ALL"] if v.get("cmdcategory") else []
    commands += v.get("memberallowcmd_sudocmd", []) + [f"!{x}" for x in v.get("memberdenycmd_sudocmd", [])]
    runas = ["ALL"] if v.get("ipasudorunasusercategory") else []
    runas += v.get("ipasudorunas_user", []) + [f"%{g}" for g in v.get("ipasudorunas_group", [])]
    runas += v.get("ipasudorunasextuser", [])
    runas_groups = ["ALL"] if v.get("ipasudorunasgroupcategory") else []
    runas_groups += v.get("ipasudorunasgroup_group", [])
    attrs: dict = {"cn": cn}
    for name, values in (
        ("sudoUser", users),
        ("sudoHost", hosts),
        ("sudoCommand", commands),
        ("sudoRunAsUser", runas),
        ("sudoRunAsGroup", runas_groups),
        ("sudoOption", v.get("ipasudoopt", [])),
        ("sudoOrder", v.get("sudoorder", [])),
    ):
        if values:
            attrs[name] = values
    c.add(dn, ["top", "sudoRole"], attrs)
    _ok(c, f"write the compat entry of sudo rule {cn}")


def _rule_result(c: Connection, cn: str, o: dict, summary: str | None = None, **extra) -> dict:
    e = load_sudorule(c, cn)
    write_compat(c, e, e["cn"][0])
    return {"result": sudorule_view(c, e), "value": e["cn"][0], "summary": summary, **extra}


CATEGORIES = ("usercategory", "hostcategory", "cmdcategory", "ipasudorunasusercategory", "ipasudorunasgroupcategory")


def _check_category(o: dict) -> None:
    for attr in CATEGORIES:
        if o.get(attr) not in (None, "", "all"):
            raise IPAError(3009, "ValidationError", f"invalid '{attr}': must be 'all'")


def sudorule_show(c, args, o):
    return _rule_result(c, args[0], o)


def sudorule_add(c, args, o):
    cn = check_rule_name(args[0])
    if sudorule_entry(c, cn):
        raise IPAError(4002, "DuplicateEntry", f'sudo rule with name "{cn}" already exists')
    _check_category(o)
    uid = secrets.token_hex(16)
    attrs: dict = {"cn": cn, "ipaUniqueID": uid, "ipaEnabledFlag": "TRUE" if o.get("ipaenabledflag", True) else "FALSE"}
    if o.get("description"):
        attrs["description"] = o["description"]
    for attr in CATEGORIES:
        if o.get(attr):
            attrs[attr] = o[attr]
    c.add(f"ipaUniqueID={uid},{SUDORULES_DN}", ["top", "ipaAssociation", "ipaSudoRule"], attrs)
    _ok(c, f"add sudo rule {cn}")
    return _rule_result(c, cn, o, f'Added Sudo Rule "{cn}"')


MEMBERS_FOR_CATEGORY = {
    "usercategory": ("memberuser", "externaluser"),
    "hostcategory": ("memberhost", "externalhost"),
    "cmdcategory": ("memberallowcmd",),
    "ipasudorunasusercategory": ("ipasudorunas", "ipasudorunasextuser"),
    "ipasudorunasgroupcategory": ("ipasudorunasgroup",),
}


def sudorule_mod(c, args, o):
    e = load_sudorule(c, args[0])
    cn = e["cn"][0]
    _check_category(o)
    changes = {}
    if "description" in o:
        new = o["description"] or None
        old = e["description"][0] if e.get("description") else None
        if new != old:
            changes["description"] = [(MODIFY_REPLACE, [new] if new else [])]
    for attr in CATEGORIES:
        if attr not in o:
            continue
        new, old = o[attr] or None, (e[attr][0] if e.get(attr) else None)
        if new == old:
            continue
        if new and any(e.get(m) for m in MEMBERS_FOR_CATEGORY[attr]):
            what = attr.replace("ipasudorunas", "runas ").replace("category", "")
            raise IPAError(
                3010,
                "MutuallyExclusiveError",
                f"{what.strip()} category cannot be set to 'all' while there are allowed {what.strip()}s",
            )
        changes[attr] = [(MODIFY_REPLACE, [new] if new else [])]
    if "ipaenabledflag" in o:
        new = "TRUE" if o["ipaenabledflag"] else "FALSE"
        if new != str(e.get("ipaenabledflag", ["TRUE"])[0]).upper():
            changes["ipaEnabledFlag"] = [(MODIFY_REPLACE, [new])]
    if not changes:
        raise IPAError(4202, "EmptyModlist", "no modifications to be performed")
    c.modify(e["dn"], changes)
    _ok(c, f"modify sudo rule {cn}")
    return _rule_result(c, cn, o, f'Modified Sudo Rule "{cn}"')


def sudorule_del(c, args, o):
    names = args[0] if isinstance(args[0], list) else [args[0]]
    for raw in names:
        e = load_sudorule(c, raw)
        c.delete(e["dn"])
        write_compat(c, None, e["cn"][0])
    return {"result": {"failed": []}, "value": names, "summary": f'Deleted Sudo Rule "{",".join(names)}"'}


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _member_dn(c: Connection, kind: str, name: str) -> str | None:
    """The DN of an existing user, group, host or sudo command; None when FreeIPA has no such entry."""
    if kind == "user":
        dn = f"uid={name},{USERS_DN}"
        return dn if DIR.entry(c, dn, ["uid"]) else None
    if kind == "group":
        dn = group_dn(str(name).lower())
        e = DIR.entry(c, dn, ["objectClass"])
        return dn if e and "groupofnames" in [x.lower() for x in e["objectclass"]] else None
    if kind == "host":
        return f"fqdn={str(name).lower()},{HOSTS_DN}" if host_exists(str(name).lower()) else None
    if kind == "hostgroup":
        dn = f"cn={str(name).lower()},{HOSTGROUPS_DN}"
        return dn if DIR.entry(c, dn, ["cn"]) else None
    if kind == "sudocmd":
        e = sudocmd_entry(c, str(name))
        return e["dn"] if e else None
    raise IPAError(3005, "OptionError", f"Unknown option: {kind}")


def _rule_members(
    c, args, o, *, add: bool, attr: str, kinds: tuple, external: str | None, category: str | None, failed_key: str
):
    """sudorule_{add,remove}_{user,host,allow_command,runasuser}: members by DN, unknown users and
    hosts as external names (as FreeIPA's add_external_post_callback does), failures in `failed`."""
    e = load_sudorule(c, args[0])
    cn = e["cn"][0]
    if add and category and e.get(category):
        what = {
            "memberuser": "users",
            "memberhost": "hosts",
            "memberallowcmd": "commands",
            "ipasudorunas": "runAsUsers",
        }[attr]
        raise IPAError(
            3010,
            "MutuallyExclusiveError",
            f"{what} cannot be added when {category.replace('ipasudorunas', 'runas ')}='all'",
        )
    current = {d.lower() for d in e.get(attr, [])}
    ext_current = {str(x) for x in e.get(external, [])} if external else set()
    failed: dict = {failed_key: {k: [] for k in kinds}}
    completed, dn_mods, ext_mods = 0, [], []
    for kind in kinds:
        for name in _as_list(o.get(kind)):
            dn = _member_dn(c, kind, name)
            if dn is None and external and kind in ("user", "host"):
                value = str(name) if kind == "user" else str(name).lower()
                if (add and value in ext_current) or value in ext_mods:
                    failed[failed_key][kind].append([value, "This entry is already a member"])
                elif not add and value not in ext_current:
                    failed[failed_key][kind].append([value, "This entry is not a member"])
                else:
                    ext_mods.append(value)
                    completed += 1
                continue
            if dn is None:
                failed[failed_key][kind].append([name, "no such entry"])
            elif add and dn.lower() in current:
                failed[failed_key][kind].append([name, "This entry is already a member"])
            elif not add and dn.lower() not in current:
                failed[failed_key][kind].append([name, "This entry is not a member"])
            else:
                dn_mods.append(dn)
                completed += 1
    changes = {}
    if dn_mods:
        changes[attr] = [(MODIFY_ADD if add else MODIFY_DELETE, dn_mods)]
    if ext_mods:
        changes[external] = [(MODIFY_ADD if add else MODIFY_DELETE, ext_mods)]
    if changes:
        c.modify(e["dn"], changes)
        _ok(c, f"change the members of sudo rule {cn}")
    return _rule_result(c, cn, o, None, failed=failed, completed=completed)


def _member_method(**spec):
    def add(c, args, o):
        return _rule_members(c, args, o, add=True, **spec)  # pylint: disable=missing-kwoa

    def remove(c, args, o):
        return _rule_members(c, args, o, add=False, **spec)  # pylint: disable=missing-kwoa

    return add, remove


sudorule_add_user, sudorule_remove_user = _member_method(
    attr="memberuser",
    kinds=("user", "group"),
    external="externaluser",
    category="usercategory",
    failed_key="memberuser",
)
sudorule_add_host, sudorule_remove_host = _member_method(
    attr="memberhost",
    kinds=("host", "hostgroup"),
    external="externalhost",
    category="hostcategory",
    failed_key="memberhost",
)
sudorule_add_allow_command, sudorule_remove_allow_command = _member_method(
    attr="memberallowcmd", kinds=("sudocmd",), external=None, category="cmdcategory", failed_key="memberallowcmd"
)
sudorule_add_runasuser, sudorule_remove_runasuser = _member_method(
    attr="ipasudorunas",
    kinds=("user", "group"),
    external="ipasudorunasextuser",
    category="ipasudorunasusercategory",
    failed_key="ipasudorunas",
)


def _sudo_option(c, args, o, add: bool):
    e = load_sudorule(c, args[0])
    cn = e["cn"][0]
    opt = o.get("ipasudoopt")
    if not isinstance(opt, str) or not opt.strip():
        raise IPAError(3007, "RequirementError", "'ipasudoopt' is required")
    have = [str(x) for x in e.get("ipasudoopt", [])]
    if add and opt in have:
        raise IPAError(4002, "DuplicateEntry", f"sudo option {opt} already exists")
    if not add and opt not in have:
        raise IPAError(4001, "AttrValueNotFound", f"ipasudoopt does not contain '{opt}'")
    c.modify(e["dn"], {"ipaSudoOpt": [(MODIFY_ADD if add else MODIFY_DELETE, [opt])]})
    _ok(c, f"change the options of sudo rule {cn}")
    verb = "Added option" if add else "Removed option"
    return _rule_result(c, cn, o, f'{verb} "{opt}" {"to" if add else "from"} Sudo Rule "{cn}"')


def sudorule_add_option(c, args, o):
    return _sudo_option(c, args, o, True)


def sudorule_remove_option(c, args, o):
    return _sudo_option(c, args, o, False)


def _sudorule_flag(c, args, o, enabled: bool):
    e = load_sudorule(c, args[0])
    flag = "TRUE" if enabled else "FALSE"
    if str(e.get("ipaenabledflag", ["TRUE"])[0]).upper() == flag:
        raise IPAError(
            4204 if enabled else 4205,
            "AlreadyActive" if enabled else "AlreadyInactive",
            "This entry is already " + ("enabled" if enabled else "disabled"),
        )
    c.modify(e["dn"], {"ipaEnabledFlag": [(MODIFY_REPLACE, [flag])]})
    _rule_result(c, e["cn"][0], o)
    return {
        "result": True,
        "value": e["cn"][0],
        "summary": f'{"Enabled" if enabled else "Disabled"} Sudo Rule "{e["cn"][0]}"',
    }


def sudorule_enable(c, args, o):
    return _sudorule_flag(c, args, o, True)


def sudorule_disable(c, args, o):
    return _sudorule_flag(c, args, o, False)


def ping(c, args, o):
    return {"summary": f"IPA server version {SERVER_VERSION}. API version {API_VERSION}"}


# name: (handler, options beyond COMMON, writes?)
METHODS = {
    "ping": (ping, set(), False),
    "group_show": (group_show, set(), False),
    "group_find": (
        group_find,
        {"cn", "description", "gidnumber", "sizelimit", "pkey_only", "private", "posix", "nonposix", "external"},
        False,
    ),
    "group_add": (group_add, {"description", "gidnumber", "nonposix", "external", "setattr", "addattr"}, True),
    "group_mod": (
        group_mod,
        {"description", "gidnumber", "posix", "external", "rename", "setattr", "addattr", "delattr"},
        True,
    ),
    "group_del": (group_del, {"continue"}, True),
    "group_add_member": (group_add_member, {"user", "group", "service", "idoverrideuser", "ipaexternalmember"}, True),
    "group_remove_member": (
        group_remove_member,
        {"user", "group", "service", "idoverrideuser", "ipaexternalmember"},
        True,
    ),
    "user_show": (user_show, {"out"}, False),
    "sysaccount_show": (sysaccount_show, set(), False),
    "sysaccount_add": (
        sysaccount_add,
        {"description", "userpassword", "random", "nsaccountlock", "privileged", "setattr", "addattr"},
        True,
    ),
    "sysaccount_mod": (
        sysaccount_mod,
        {"description", "userpassword", "random", "nsaccountlock", "privileged", "setattr", "addattr", "delattr"},
        True,
    ),
    "sysaccount_del": (sysaccount_del, {"continue"}, True),
    "host_show": (host_show, {"out"}, False),
    "host_add": (host_add, {"force", "no_reverse", "ip_address", "description"}, True),
    "service_show": (service_show, {"out"}, False),
    "service_add": (
        service_add,
        {
            "force",
            "skip_host_check",
            "ipakrbokasdelegate",
            "ipakrboktoauthasdelegate",
            "ipakrbrequirespreauth",
            "setattr",
            "addattr",
        },
        True,
    ),
    "service_del": (service_del, {"continue"}, True),
    "service_add_host": (service_add_host, {"host"}, True),
    "service_remove_host": (service_remove_host, {"host"}, True),
    "hostgroup_show": (hostgroup_show, set(), False),
    "hostgroup_add": (hostgroup_add, {"description"}, True),
    "sudocmd_show": (sudocmd_show, set(), False),
    "sudocmd_add": (sudocmd_add, {"description"}, True),
    "sudocmd_del": (sudocmd_del, {"continue"}, True),
    "sudorule_show": (sudorule_show, set(), False),
    "sudorule_add": (sudorule_add, {"description", "ipaenabledflag", *CATEGORIES}, True),
    "sudorule_mod": (sudorule_mod, {"description", "ipaenabledflag", *CATEGORIES}, True),
    "sudorule_del": (sudorule_del, {"continue"}, True),
    "sudorule_enable": (sudorule_enable, set(), True),
    "sudorule_disable": (sudorule_disable, set(), True),
    "sudorule_add_user": (sudorule_add_user, {"user", "group"}, True),
    "sudorule_remove_user": (sudorule_remove_user, {"user", "group"}, True),
    "sudorule_add_host": (sudorule_add_host, {"host", "hostgroup"}, True),
    "sudorule_remove_host": (sudorule_remove_host, {"host", "hostgroup"}, True),
    "sudorule_add_allow_command": (sudorule_add_allow_command, {"sudocmd"}, True),
    "sudorule_remove_allow_command": (sudorule_remove_allow_command, {"sudocmd"}, True),
    "sudorule_add_runasuser": (sudorule_add_runasuser, {"user", "group"}, True),
    "sudorule_remove_runasuser": (sudorule_remove_runasuser, {"user", "group"}, True),
    "sudorule_add_option": (sudorule_add_option, {"ipasudoopt"}, True),
    "sudorule_remove_option": (sudorule_remove_option, {"ipasudoopt"}, True),
}


# ---------------------------------------------------------------------------- HTTP
SESSIONS: dict[str, str] = {}


class Handler(BaseHTTPRequestHandler):
    server_version = "Apache"
    sys_version = ""

    def log_message(self, format, *args):
        sys.stdout.write("%s - %s\n" % (self.address_string(), format % args))
        sys.stdout.flush()

    def _send(self, code: int, body: str | dict, headers: dict | None = None, ctype: str = "text/plain") -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if isinstance(body, dict) else ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _referer_ok(self) -> bool:
        host = self.headers.get("Host", "")
        return (self.headers.get("Referer") or "").startswith(f"https://{host}/ipa")

    def _session(self) -> str | None:
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        if "ipa_session" not in cookie:
            return None
        token = cookie["ipa_session"].value.removeprefix("MagBearerToken=")
        return SESSIONS.get(token)

    def do_GET(self):
        self._send(405 if self.path.startswith("/ipa/session") else 404, "Not supported\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/ipa/session/login_password":
            return self._login(body)
        if self.path == "/ipa/session/login_kerberos":
            return self._send(
                401, "Kerberos login is not offered by the test peer\n", {"WWW-Authenticate": "Negotiate"}
            )
        if self.path in ("/ipa/session/json", "/ipa/json"):
            return self._json(body)
        return self._send(404, "Not Found\n")

    def _login(self, body: bytes) -> None:
        if not self._referer_ok():
            return self._send(400, "Missing or invalid HTTP Referer\n")
        form = parse_qs(body.decode(errors="replace"))
        user = (form.get("user") or [""])[0]
        password = (form.get("password") or [""])[0]
        if not user or not DIR.check_password(user, password):
            return self._send(401, "Unauthorized\n", {"X-IPA-Rejection-Reason": "invalid-password"})
        token = secrets.token_urlsafe(24)
        SESSIONS[token] = user
        cookie = f"ipa_session=MagBearerToken={token};path=/ipa;httponly;secure;"
        return self._send(200, "", {"Set-Cookie": cookie, "IPASESSION": token})

    def _json(self, body: bytes) -> None:
        user = self._session()
        if user is None:
            return self._send(401, "Unauthorized\n", {"WWW-Authenticate": "Negotiate"})
        if not self._referer_ok():
            return self._send(400, "Missing or invalid HTTP Referer\n")
        principal = f"{user}@{REALM}"
        rid = None
        try:
            try:
                req = json.loads(body)
                method, params, rid = req["method"], req.get("params") or [[], {}], req.get("id")
                args, options = [*params, {}][:2]
            except (ValueError, KeyError, TypeError) as e:
                raise IPAError(909, "JSONError", f"Invalid JSON-RPC request: {e}") from None
            if method == "session_logout":
                cookie = SimpleCookie(self.headers.get("Cookie", ""))
                SESSIONS.pop(cookie["ipa_session"].value.removeprefix("MagBearerToken="), None)
                return self._send(
                    200, {"result": None, "error": None, "id": rid, "principal": principal, "version": SERVER_VERSION}
                )
            method = method.split("/")[0]
            if method not in METHODS:
                raise IPAError(905, "CommandError", f"unknown command '{method}'")
            handler, allowed, writes = METHODS[method]
            version = options.get("version")
            if version and str(version).split(".", maxsplit=1)[0] != API_VERSION.split(".", maxsplit=1)[0]:
                raise IPAError(
                    901,
                    "VersionError",
                    f"{version} client incompatible with {API_VERSION} server at 'https://{self.headers.get('Host')}/ipa/json'",
                )
            for opt in options:
                if opt not in allowed | COMMON:
                    raise IPAError(3005, "OptionError", f"Unknown option: {opt}")
            if writes and not is_admin(user):
                raise IPAError(2100, "ACIError", f"Insufficient access: you are not allowed to run {method}")
            if not isinstance(args, list):
                args = [args]
            with LOCK:
                c = DIR.conn()
                try:
                    result = handler(c, args, options)
                finally:
                    c.unbind()
            resp = {"result": result, "error": None, "id": rid, "principal": principal, "version": SERVER_VERSION}
        except IPAError as e:
            resp = {
                "result": None,
                "id": rid,
                "principal": principal,
                "version": SERVER_VERSION,
                "error": {"code": e.code, "message": e.message, "name": e.name, "data": {}},
            }
        except IndexError:
            resp = {
                "result": None,
                "id": rid,
                "principal": principal,
                "version": SERVER_VERSION,
                "error": {
                    "code": 3007,
                    "message": "a required argument is missing",
                    "name": "RequirementError",
                    "data": {},
                },
            }
        return self._send(200, resp)


def relay(listen: str, target: str) -> None:
    """Relay TCP from `listen` (host:port) to `target`: 389-ds binds one address, clients need two."""
    import socket

    lhost, lport = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((lhost, int(lport)))
    srv.listen(64)

    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def accept():
        while True:
            client, _peer = srv.accept()
            try:
                upstream = socket.create_connection((thost, int(tport)), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def main() -> int:
    p = argparse.ArgumentParser(description="FreeIPA JSON-RPC test peer")
    p.add_argument("--state", type=Path, default=identity.STATE)
    p.add_argument("--listen", action="append", default=[])
    p.add_argument("--port", type=int, default=identity.PORTS["rpc"])
    p.add_argument("--pidfile", type=Path)
    p.add_argument("--relay", action="append", default=[], help="LISTEN_HOST:PORT=TARGET_HOST:PORT")
    args = p.parse_args()
    for spec in args.relay:
        relay(*spec.split("=", 1))
    listen = args.listen or ["127.0.0.1"]
    crt, key = ensure_tls(args.state, listen)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(crt, key)
    servers = []
    for addr in listen:
        srv = ThreadingHTTPServer((addr, args.port), Handler)
        srv.daemon_threads = True
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        servers.append(srv)
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    if args.pidfile:
        args.pidfile.write_text(str(os.getpid()))
    print(f"FreeIPA JSON-RPC peer on {', '.join(f'https://{a}:{args.port}/ipa' for a in listen)}", flush=True)
    servers[0].serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
