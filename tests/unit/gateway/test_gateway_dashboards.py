"""Dashboards through the gateway: only the owner (or an admin) gets them, HTTP and WebSockets relayed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from dataplatform_dask.gateway import dashboards
from dataplatform_dask.gateway.auth import PlatformUser

USERS = {
    "alice": PlatformUser("alice", ["data_engineers"]),
    "bob": PlatformUser("bob", ["data_analysts"]),
    "dave": PlatformUser("dave", ["admins"], admin=True),
}


class FakeAuthenticator:
    async def authenticate_and_handle(self, request, handler):
        user = USERS.get(request.headers.get("X-User", ""))
        if user is None:
            raise web.HTTPUnauthorized()
        request["user"] = user
        return await handler(request)


class FakeProxy:
    def __init__(self):
        self.routes = []

    async def add_route(self, kind=None, sni=None, path=None, target=None):
        self.routes.append((kind, sni or path))


async def upstream_app():
    async def status(request):
        return web.Response(text=f"dashboard {request.path} {request.query_string}", headers={"X-Bokeh": "1"})

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_str("echo " + msg.data)
        return sock

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/status/ws", ws)
    return app


async def scenario():
    upstream = TestServer(await upstream_app())
    await upstream.start_server()
    dash = f"http://127.0.0.1:{upstream.port}"
    clusters = {"c1": SimpleNamespace(name="c1", username="alice", dashboard_address=dash)}
    proxy = FakeProxy()

    async def get_cluster(name, wait=False):
        return clusters.get(name)

    backend = SimpleNamespace(proxy=proxy, get_cluster=get_cluster)
    app = web.Application()
    app["authenticator"] = FakeAuthenticator()
    dashboards.install(backend, app)
    await backend.proxy.add_route(kind="PATH", path="/clusters/c1", target=dash)
    await backend.proxy.add_route(kind="SNI", sni="c1", target="tls://127.0.0.1:1")
    out = {"routes": proxy.routes}
    async with TestClient(TestServer(app)) as client:
        for who in ["alice", "bob", "dave", ""]:
            resp = await client.get("/clusters/c1/status?x=1", headers={"X-User": who})
            out[who or "anonymous"] = (resp.status, await resp.text() if resp.status == 200 else "")
        resp = await client.get("/clusters/nope/status", headers={"X-User": "alice"})
        out["unknown"] = resp.status
        async with client.ws_connect("/clusters/c1/status/ws", headers={"X-User": "alice"}) as sock:
            await sock.send_str("hi")
            msg = await sock.receive(timeout=5)
            out["ws"] = msg.data if msg.type == WSMsgType.TEXT else msg.type
    await upstream.close()
    return out


def test_dashboards_only_for_their_owner_and_admins():
    out = asyncio.run(scenario())
    assert out["routes"] == [("SNI", "c1")]  # the proxy's direct dashboard route is gone
    assert out["alice"] == (200, "dashboard /status x=1")
    assert out["dave"][0] == 200
    assert out["bob"][0] == 403
    assert out["anonymous"][0] == 401
    assert out["unknown"] == 404
    assert out["ws"] == "echo hi"
