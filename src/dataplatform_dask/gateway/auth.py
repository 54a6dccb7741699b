# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""FreeIPA authentication for dask-gateway: Kerberos (SPNEGO) or an LDAP password, with groups.

``Authorization: Negotiate <token>`` is accepted with the gateway's ``HTTP/<fqdn>`` keytab;
``Authorization: Basic`` is checked by a simple bind as ``uid=<user>,cn=users,cn=accounts,<suffix>``.
Either way the user's groups come from FreeIPA's ``memberOf`` (nested memberships included),
read with the gateway's bind account. Users in no platform group are refused with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
import time

from aiohttp import web
from dask_gateway_server.auth import Authenticator
from dask_gateway_server.models import User
from multidict import CIMultiDict
from traitlets import Dict, default

from .policy import CURRENT_USER, LazyPolicy, Refused

USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


class AuthError(Exception):
    """Credentials that do not prove who the caller is (401)."""


def refusal(reason: str) -> web.HTTPException:
    """The answer to an authenticated user the platform's rules refuse: 422 with the reason.

    dask-gateway's error handler turns it into ``{"error": reason}``, and its client reads that
    body only for 404, 409, 422 and 500 (a 403 becomes a bare ``ClientResponseError: 403,
    message='Forbidden'``, the reason phrase being dropped by the proxy). 422 is also what
    dask-gateway answers for its own quota refusals, so the client raises
    ``ValueError(<reason>)`` for every refusal alike.
    """
    return web.HTTPUnprocessableEntity(reason=reason)


class PlatformUser(User):
    """A user whose ``admin`` flag is honoured: admins see and stop every cluster."""

    def has_permissions(self, cluster):
        return self.admin or super().has_permissions(cluster)


def check_username(name: str) -> str:
    """A FreeIPA login name, or AuthError: nothing that could change a DN or a filter."""
    if not isinstance(name, str) or not USERNAME_RE.match(name):
        raise AuthError("invalid user name")
    return name


def group_names(member_of, suffix: str) -> list[str]:
    """Group names from memberOf DNs: only ``cn=<name>,cn=groups,cn=accounts,<suffix>``."""
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    want = [("cn", "groups"), ("cn", "accounts")] + [(a.lower(), v.lower()) for a, v, _sep in parse_dn(suffix)]
    out = set()
    for dn in member_of or []:
        try:
            rdns = [(a.lower(), v) for a, v, _sep in parse_dn(dn)]
        except LDAPInvalidDnError:
            continue
        if len(rdns) != len(want) + 1 or rdns[0][0] != "cn":
            continue
        if [(a, v.lower()) for a, v in rdns[1:]] != want:
            continue
        out.add(rdns[0][1])
    return sorted(out)


class TTLCache:
    """A small thread-safe cache whose entries expire ``ttl`` seconds after they were put."""

    def __init__(self, ttl: float, clock=time.monotonic):
        self.ttl = float(ttl)
        self.clock = clock
        self._data = {}
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            expires, value = hit
            if expires <= self.clock():
                del self._data[key]
                return None
            return value

    def put(self, key, value):
        if self.ttl <= 0:
            return
        with self._lock:
            self._data[key] = (self.clock() + self.ttl, value)


class Directory:
    """FreeIPA's LDAP: user binds and group lookups with the bind account (ldap3, blocking)."""

    def __init__(self, uri, suffix, bind_dn, bind_password, *, ca_file=None, start_tls=False, timeout=5):
        self.uri = uri
        self.suffix = suffix
        self.bind_dn = bind_dn
        self.bind_password = bind_password
        self.ca_file = ca_file
        self.start_tls = start_tls
        self.timeout = timeout

    def _server(self):
        import ssl

        from ldap3 import NONE, Server, Tls

        tls = Tls(ca_certs_file=self.ca_file, validate=ssl.CERT_REQUIRED) if self.ca_file else None
        return Server(self.uri, get_info=NONE, tls=tls, connect_timeout=self.timeout)

    def _connect(self, dn, password):
        from ldap3 import Connection

        conn = Connection(
            self._server(), user=dn, password=password, receive_timeout=self.timeout, raise_exceptions=False
        )
        conn.open()
        if self.start_tls:
            conn.start_tls()
        return conn

    def user_dn(self, username: str) -> str:
        from ldap3.utils.dn import escape_rdn

        return f"uid={escape_rdn(check_username(username))},cn=users,cn=accounts,{self.suffix}"

    def check_password(self, username: str, password: str) -> bool:
        if not password:
            # An empty password is an LDAP "unauthenticated bind": it would succeed.
            raise AuthError("empty password")
        conn = self._connect(self.user_dn(username), password)
        try:
            return bool(conn.bind())
        finally:
            conn.unbind()

    def groups(self, username: str):
        """The user's groups, or None when the directory has no such user."""
        from ldap3 import SUBTREE
        from ldap3.utils.conv import escape_filter_chars

        conn = self._connect(self.bind_dn, self.bind_password)
        try:
            if not conn.bind():
                raise RuntimeError(f"bind as {self.bind_dn} to {self.uri} failed: {conn.result.get('description')}")
            conn.search(
                f"cn=users,cn=accounts,{self.suffix}",
                f"(&(objectClass=posixAccount)(uid={escape_filter_chars(check_username(username))}))",
                search_scope=SUBTREE,
                attributes=["memberOf"],
                size_limit=2,
            )
            if len(conn.entries) != 1:
                return None
            values = conn.entries[0].entry_attributes_as_dict.get("memberOf", [])
            return group_names(values, self.suffix)
        finally:
            conn.unbind()


class Credentials:
    """Turns an Authorization header into (user, groups, response token); caches briefly."""

    def __init__(
        self,
        directory: Directory,
        realm: str,
        *,
        cache_ttl: float = 60,
        methods=("kerberos", "ldap"),
        accept=None,
        clock=time.monotonic,
    ):
        self.directory = directory
        self.realm = realm
        self.methods = tuple(methods)
        self.accept = accept
        self.passwords = TTLCache(cache_ttl, clock)
        self.group_cache = TTLCache(cache_ttl, clock)
        self._salt = os.urandom(16)

    def challenge(self):
        out = []
        if "kerberos" in self.methods:
            out.append(("WWW-Authenticate", "Negotiate"))
        if "ldap" in self.methods:
            out.append(("WWW-Authenticate", 'Basic realm="dask-gateway"'))
        return out

    def verify(self, header: str):
        """(username, out_token) for a valid Authorization header, else AuthError."""
        if not header or " " not in header:
            raise AuthError("no credentials")
        kind, value = header.split(" ", 1)
        kind = kind.lower()
        if kind == "negotiate" and "kerberos" in self.methods:
            return self._kerberos(value.strip())
        if kind == "basic" and "ldap" in self.methods:
            return self._password(value.strip()), None
        raise AuthError(f"unsupported authentication {kind}")

    def _kerberos(self, value):
        try:
            token = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise AuthError("malformed Negotiate token") from None
        accept = self.accept
        if accept is None:
            from .spnego import accept
        try:
            principal, out = accept(token)
        except Exception as exc:
            raise AuthError(f"Kerberos token refused: {exc}") from None
        name, _at, realm = principal.rpartition("@")
        if realm != self.realm or "/" in name:
            raise AuthError(f"principal {principal} is not a user of {self.realm}")
        return check_username(name), out

    def _password(self, value):
        try:
            username, _colon, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials") from None
        check_username(username)
        if not password:
            raise AuthError("empty password")
        digest = hmac.new(self._salt, f"{username}\0{password}".encode(), hashlib.sha256).digest()
        if self.passwords.get(digest) == username:
            return username
        if not self.directory.check_password(username, password):
            raise AuthError("wrong user name or password")
        self.passwords.put(digest, username)
        return username

    def groups(self, username):
        hit = self.group_cache.get(username)
        if hit is not None:
            return hit
        groups = self.directory.groups(username)
        if groups is None:
            raise AuthError(f"user {username} is not in the directory")
        self.group_cache.put(username, groups)
        return groups


class FreeIPAAuthenticator(Authenticator):
    """dask-gateway authenticator for FreeIPA; configured from the gateway settings file."""

    auth_settings = Dict(
        help="uri, suffix, bind_dn, bind_password_file, ca_file, start_tls, realm, cache_ttl, methods", config=True
    )
    policy_settings = Dict(help="The platform policy (dataplatform_dask.gateway.policy.Policy settings).", config=True)

    @default("cache_max_age")
    def _default_cache_max_age(self):
        return int(self.auth_settings.get("cache_ttl", 60))

    @property
    def credentials(self) -> Credentials:
        if getattr(self, "_dp_credentials", None) is None:
            s = self.auth_settings
            password = ""
            if s.get("bind_password_file"):
                with open(s["bind_password_file"], encoding="utf-8") as f:
                    password = f.read().strip()
            directory = Directory(
                s["uri"],
                s["suffix"],
                s["bind_dn"],
                password,
                ca_file=s.get("ca_file") or None,
                start_tls=bool(s.get("start_tls")),
            )
            self._dp_credentials = Credentials(
                directory,
                s["realm"],
                cache_ttl=float(s.get("cache_ttl", 60)),
                methods=s.get("methods", ("kerberos", "ldap")),
            )
        return self._dp_credentials

    policy = LazyPolicy()

    async def authenticate_and_handle(self, request, handler):
        async def with_user(req):
            CURRENT_USER.set(req["user"])
            return await handler(req)

        return await super().authenticate_and_handle(request, with_user)

    async def authenticate(self, request):
        creds = self.credentials
        try:
            username, out = await asyncio.to_thread(creds.verify, request.headers.get("Authorization", ""))
            groups = await asyncio.to_thread(creds.groups, username)
        except AuthError as exc:
            self.log.info("Authentication refused from %s: %s", request.remote, exc)
            raise web.HTTPUnauthorized(
                headers=CIMultiDict(creds.challenge()), reason="Authentication required"
            ) from None
        except Exception as exc:  # the directory is down or refuses the bind account: not the user's fault
            self.log.error("Cannot check credentials from %s: %r", request.remote, exc)
            raise web.HTTPServiceUnavailable(
                reason="The identity service (FreeIPA) is unreachable; try again shortly"
            ) from None
        try:
            self.policy.limits_for(username, groups)
        except Refused as exc:
            self.log.info("Refused %s: %s", username, exc)
            raise refusal(str(exc)) from None
        user = PlatformUser(username, groups=groups, admin=self.policy.is_admin(groups))
        return user, out

    async def pre_response(self, request, response, context=None):
        if context:
            response.headers["WWW-Authenticate"] = "Negotiate " + base64.b64encode(context).decode()
