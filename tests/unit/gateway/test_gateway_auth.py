"""FreeIPA authentication: injection, empty passwords, caching, Kerberos names, groups, refusals."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp import web
from dataplatform_dask.gateway import auth
from dataplatform_dask.gateway.auth import (
    AuthError,
    Credentials,
    Directory,
    FreeIPAAuthenticator,
    PlatformUser,
    TTLCache,
    check_username,
    group_names,
)
from dataplatform_dask.gateway.policy import CURRENT_USER
from ldap3 import MOCK_SYNC, Connection, Server

SUFFIX = "dc=dataplatform,dc=test"
GROUPS = f"cn=groups,cn=accounts,{SUFFIX}"


def g(name: str) -> str:
    return f"cn={name},{GROUPS}"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeDirectory:
    def __init__(self, users):
        self.users = users  # name -> (password, groups)
        self.binds = 0
        self.lookups = 0

    def check_password(self, username, password):
        self.binds += 1
        if not password:
            raise AuthError("empty password")
        return username in self.users and self.users[username][0] == password

    def groups(self, username):
        self.lookups += 1
        return self.users[username][1] if username in self.users else None


USERS = {
    "alice": ("Alice-Secret123", ["data_engineers", "dask_users", "ipausers"]),
    "bob": ("Bob-Secret123", ["data_analysts", "dask_users", "ipausers"]),
    "carol": ("Carol-Secret123", ["ipausers"]),
    "dave": ("Dave-Secret123", ["admins", "ipausers"]),
}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "*",
        "alice)(uid=*",
        "alice*",
        "(uid=*)",
        "alice,cn=admins",
        "alice\\2a",
        "a b",
        "Alice",
        "x" * 40,
        "alice\x00",
        "-alice",
        "uid=alice",
    ],
)
def test_names_that_could_change_a_dn_or_filter_are_refused(name):
    with pytest.raises(AuthError):
        check_username(name)


@pytest.mark.parametrize("name", ["alice", "svc_etl", "j.doe", "a-b", "_x"])
def test_ordinary_login_names_pass(name):
    assert check_username(name) == name


def test_group_names_keep_freeipa_groups_only_including_nested_ones():
    member_of = [
        g("data_engineers"),
        g("dask_users"),  # nested: data_engineers is a member of dask_users
        g("ipausers"),
        f"cn=Data Engineers Role,cn=roles,cn=accounts,{SUFFIX}",
        f"ipaUniqueID=1234,cn=hbac,{SUFFIX}",
        "cn=data_engineers,cn=groups,cn=accounts,dc=other,dc=test",
        f"CN=Admins,CN=Groups,CN=Accounts,{SUFFIX.upper()}",
        "not a dn",
    ]
    assert group_names(member_of, SUFFIX) == ["Admins", "dask_users", "data_engineers", "ipausers"]
    assert group_names([], SUFFIX) == []
    assert group_names(None, SUFFIX) == []


def test_cache_entries_expire():
    clock = Clock()
    cache = TTLCache(30, clock)
    cache.put("k", "v")
    assert cache.get("k") == "v"
    clock.now += 29.9
    assert cache.get("k") == "v"
    clock.now += 0.2
    assert cache.get("k") is None
    TTLCache(0, clock).put("k", "v")


def creds(directory=None, clock=None, accept=None, ttl=30):
    return Credentials(
        directory or FakeDirectory(USERS), "DATAPLATFORM.TEST", cache_ttl=ttl, accept=accept, clock=clock or Clock()
    )


def test_a_password_login_returns_the_user():
    assert creds().verify(basic("alice", "Alice-Secret123")) == ("alice", None)


@pytest.mark.parametrize(
    "header",
    [
        basic("alice", ""),
        basic("alice", "wrong"),
        basic("alice)(uid=*", "x"),
        basic("", "x"),
        "Basic !!!",
        "Bearer abc",
        "",
        "Basic",
    ],
)
def test_bad_credentials_are_refused(header):
    with pytest.raises(AuthError):
        creds().verify(header)


def test_an_empty_password_never_reaches_the_directory():
    d = FakeDirectory(USERS)
    with pytest.raises(AuthError, match="empty password"):
        creds(d).verify(basic("alice", ""))
    assert d.binds == 0


def test_successful_logins_are_cached_until_they_expire():
    d, clock = FakeDirectory(USERS), Clock()
    c = creds(d, clock)
    for _i in range(3):
        c.verify(basic("alice", "Alice-Secret123"))
        c.groups("alice")
    assert (d.binds, d.lookups) == (1, 1)
    with pytest.raises(AuthError):  # a different password is not served from the cache
        c.verify(basic("alice", "Alice-Secret124"))
    clock.now += 31
    c.verify(basic("alice", "Alice-Secret123"))
    c.groups("alice")
    assert (d.binds, d.lookups) == (3, 2)


def test_failed_logins_are_not_cached():
    d = FakeDirectory(USERS)
    c = creds(d)
    for _i in range(2):
        with pytest.raises(AuthError):
            c.verify(basic("alice", "nope"))
    assert d.binds == 2


def test_kerberos_principals_map_to_users_of_the_realm_only():
    def accept_as(principal):
        return lambda token: (principal, b"mutual")

    token = "Negotiate " + base64.b64encode(b"token").decode()
    assert creds(accept=accept_as("alice@DATAPLATFORM.TEST")).verify(token) == ("alice", b"mutual")
    for bad in ["alice@EVIL.TEST", "HTTP/gw.dataplatform.test@DATAPLATFORM.TEST", "alice", "Alice@DATAPLATFORM.TEST"]:
        with pytest.raises(AuthError):
            creds(accept=accept_as(bad)).verify(token)
    with pytest.raises(AuthError, match="malformed"):
        creds(accept=accept_as("alice@DATAPLATFORM.TEST")).verify("Negotiate ***")


def test_a_refused_kerberos_token_is_an_auth_error():
    def refuse(token):
        raise RuntimeError("Invalid token was supplied")

    with pytest.raises(AuthError, match="Invalid token"):
        creds(accept=refuse).verify("Negotiate " + base64.b64encode(b"junk").decode())


def test_the_real_acceptor_refuses_junk():
    pytest.importorskip("ctypes")
    from dataplatform_dask.gateway import spnego

    try:
        spnego._gss()
    except OSError:
        pytest.skip("no libgssapi_krb5 on this machine")
    with pytest.raises(spnego.GSSError):
        spnego.accept(b"\x60\x03junk")
    with pytest.raises(spnego.GSSError):
        spnego.accept(b"")


# -- the Directory against ldap3's in-memory LDAP server ----------------------------------


@pytest.fixture
def directory(monkeypatch):
    server = Server("mock")
    bind_dn = f"uid=dask-service,cn=sysaccounts,cn=etc,{SUFFIX}"
    seed = Connection(server, user=bind_dn, password="Dask-Service-Secret123", client_strategy=MOCK_SYNC)
    seed.strategy.add_entry(
        bind_dn, {"uid": "dask-service", "userPassword": "Dask-Service-Secret123", "objectClass": ["account"]}
    )
    for name, (password, groups) in USERS.items():
        seed.strategy.add_entry(
            f"uid={name},cn=users,cn=accounts,{SUFFIX}",
            {
                "uid": name,
                "userPassword": password,
                "objectClass": ["posixAccount", "person"],
                "memberOf": [g(x) for x in groups],
            },
        )
    d = Directory("ldap://mock", SUFFIX, bind_dn, "Dask-Service-Secret123")

    def connect(dn, password):
        conn = Connection(server, user=dn, password=password, client_strategy=MOCK_SYNC, raise_exceptions=False)
        conn.open()
        return conn

    monkeypatch.setattr(d, "_connect", connect)
    return d


def test_directory_binds_as_the_user(directory):
    assert directory.check_password("alice", "Alice-Secret123") is True
    assert directory.check_password("alice", "Bob-Secret123") is False
    assert directory.check_password("nobody", "x") is False
    with pytest.raises(AuthError):
        directory.check_password("alice", "")


def test_directory_reads_groups_with_the_bind_account(directory):
    assert directory.groups("alice") == ["dask_users", "data_engineers", "ipausers"]
    assert directory.groups("carol") == ["ipausers"]
    assert directory.groups("nobody") is None


@pytest.mark.parametrize("name", ["*", "a*", "alice)(|(uid=*", "alice)(objectClass=*"])
def test_directory_refuses_filter_injection(directory, name):
    with pytest.raises(AuthError):
        directory.groups(name)
    with pytest.raises(AuthError):
        directory.check_password(name, "x")


def test_directory_escapes_even_what_it_lets_through(directory):
    assert directory.user_dn("j.doe") == f"uid=j.doe,cn=users,cn=accounts,{SUFFIX}"


# -- the authenticator -------------------------------------------------------------------


class Request(dict):
    def __init__(self, header=""):
        super().__init__()
        self.headers = {"Authorization": header} if header else {}
        self.remote = "127.0.0.1"
        self.cookies = {}


@pytest.fixture
def authenticator():
    a = FreeIPAAuthenticator(auth_settings={"realm": "DATAPLATFORM.TEST", "cache_ttl": 30}, policy_settings={})
    a._dp_credentials = creds()
    return a


def run(coro):
    return asyncio.run(coro)


def test_alice_gets_her_groups_and_no_admin(authenticator):
    user, _token = run(authenticator.authenticate(Request(basic("alice", "Alice-Secret123"))))
    assert isinstance(user, PlatformUser)
    assert user.name == "alice"
    assert {"data_engineers", "dask_users"} <= user.groups
    assert user.admin is False


def test_dave_is_an_admin_and_may_act_on_any_cluster(authenticator):
    user, _token = run(authenticator.authenticate(Request(basic("dave", "Dave-Secret123"))))
    assert user.admin is True

    class Cluster:
        username = "bob"

    assert user.has_permissions(Cluster())
    assert not PlatformUser("alice", ["data_engineers"]).has_permissions(Cluster())


def test_carol_is_refused_with_the_reason(authenticator):
    with pytest.raises(web.HTTPUnprocessableEntity) as exc:
        run(authenticator.authenticate(Request(basic("carol", "Carol-Secret123"))))
    assert "none of the Dask platform groups" in exc.value.reason


def test_the_stock_client_raises_the_refusal_reason(authenticator):
    """dask_gateway.Gateway against dask-gateway-server's own routes and error handler: the
    exception carol sees names the missing group, for every call, not a bare HTTP status."""
    from dask_gateway import BasicAuth, Gateway
    from dask_gateway_server.routes import default_routes

    class Backend:
        async def list_clusters(self, username=None, statuses=None):
            return []

    async def scenario():
        app = web.Application()
        app["authenticator"] = authenticator
        app["backend"] = Backend()
        app.add_routes(default_routes)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        errors = {}
        try:
            for user, password in [("carol", "Carol-Secret123"), ("alice", "Alice-Secret123")]:
                async with Gateway(f"http://127.0.0.1:{port}", auth=BasicAuth(user, password), asynchronous=True) as gw:
                    try:
                        errors[user] = await gw.list_clusters()
                    except Exception as exc:
                        errors[user] = exc
        finally:
            await runner.cleanup()
        return errors

    out = run(scenario())
    assert out["alice"] == []
    assert isinstance(out["carol"], ValueError)
    assert "user carol is in none of the Dask platform groups" in str(out["carol"])
    assert "data_engineers" in str(out["carol"])


@pytest.mark.parametrize("header", [basic("alice", "wrong"), basic("alice", ""), "", "Negotiate !!"])
def test_wrong_credentials_get_401_with_both_challenges(authenticator, header):
    with pytest.raises(web.HTTPUnauthorized) as exc:
        run(authenticator.authenticate(Request(header)))
    challenges = exc.value.headers.getall("WWW-Authenticate")
    assert "Negotiate" in challenges
    assert any(c.startswith("Basic") for c in challenges)


def test_the_request_user_is_visible_to_the_backend(authenticator):
    seen = []

    async def handler(request):
        seen.append(CURRENT_USER.get())
        return web.Response(text="ok")

    run(authenticator.authenticate_and_handle(Request(basic("dave", "Dave-Secret123")), handler))
    assert seen[0].name == "dave" and seen[0].admin


def test_the_mutual_token_goes_back_to_the_client(authenticator):
    resp = web.Response()
    run(authenticator.pre_response(None, resp, b"\x01\x02"))
    assert resp.headers["WWW-Authenticate"] == "Negotiate AQI="


def test_bind_password_is_read_from_its_file(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("Dask-Service-Secret123\n")
    a = FreeIPAAuthenticator(
        auth_settings={
            "uri": "ldap://127.0.0.1:1",
            "suffix": SUFFIX,
            "bind_dn": "uid=x",
            "bind_password_file": str(pw),
            "realm": "R",
            "cache_ttl": 5,
        }
    )
    assert a.credentials.directory.bind_password == "Dask-Service-Secret123"
    assert a.cache_max_age == 5
    assert auth.USERNAME_RE.pattern.startswith("^")


def test_an_unreachable_directory_is_a_503_not_a_500(authenticator):
    class Down(FakeDirectory):
        def check_password(self, username, password):
            raise OSError("connection refused")

    authenticator._dp_credentials = creds(Down(USERS))
    with pytest.raises(web.HTTPServiceUnavailable, match="unreachable"):
        run(authenticator.authenticate(Request(basic("alice", "Alice-Secret123"))))
