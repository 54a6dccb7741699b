# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster dashboards behind the gateway's authentication.

dask-gateway's proxy sends ``/clusters/<name>/`` straight to the scheduler's dashboard, to
anyone who knows the name. Here the proxy keeps no such route: the request falls through to
the gateway, which authenticates the user, checks the cluster is theirs (or that they are an
admin) and relays HTTP and the dashboard's WebSockets.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "cookie",
    "content-length",
}


def install(backend, app) -> None:
    """Route /clusters/<name>/... through the gateway; drop the proxy's direct routes."""
    proxy = getattr(backend, "proxy", None)
    if proxy is not None:
        add_route = proxy.add_route

        async def without_dashboards(kind=None, sni=None, path=None, target=None):
            if kind == "PATH" and path and path.startswith("/clusters/"):
                return None
            return await add_route(kind=kind, sni=sni, path=path, target=target)

        proxy.add_route = without_dashboards

    async def handler(request):
        async def handle(req):
            return await relay(backend, req)

        return await request.app["authenticator"].authenticate_and_handle(request, handle)

    app.router.add_route("*", "/clusters/{cluster_name}/{tail:.*}", handler)


async def relay(backend, request):
    user = request["user"]
    name = request.match_info["cluster_name"]
    cluster = await backend.get_cluster(name)
    if cluster is None or not cluster.dashboard_address:
        raise web.HTTPNotFound(reason=f"Cluster {name} has no dashboard")
    if not user.has_permissions(cluster):
        raise web.HTTPForbidden(reason=f"User {user.name} lacks permissions to view cluster {name}")
    url = f"{cluster.dashboard_address}/{request.match_info['tail']}"
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await relay_websocket(request, url.replace("http", "ws", 1), headers)
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.request(
            request.method, url, params=request.query, headers=headers, data=await request.read(), allow_redirects=False
        ) as upstream,
    ):
        body = await upstream.read()
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
        return web.Response(status=upstream.status, body=body, headers=out)


async def relay_websocket(request, url, headers):
    client = web.WebSocketResponse()
    await client.prepare(request)
    async with aiohttp.ClientSession() as session, session.ws_connect(url, params=request.query) as upstream:

        async def pump(src, dst):
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                else:
                    break

        tasks = [asyncio.ensure_future(pump(client, upstream)), asyncio.ensure_future(pump(upstream, client))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
    await client.close()
    return client
