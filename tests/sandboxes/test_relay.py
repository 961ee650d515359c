"""The port relay (HTTP and WebSocket) into real local sandboxes: servers started inside a
bubblewrap sandbox answer through `/api/sandboxes/{id}/ports/{port}/…`, never seeing the
caller's credentials."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from shoal.sandbox import LocalProvider, SandboxProvider
from tests.conftest import TestUser
from tests.sandboxes.conftest import new_sandbox, started, upload

pytestmark = pytest.mark.services
ECHO = (Path(__file__).parent / "servers" / "echo_server.py").read_bytes()


@pytest.fixture
def sandbox_provider(local_sandbox_provider: LocalProvider) -> SandboxProvider:
    return local_sandbox_provider


async def _serve(app: FastAPI, sandbox_id: str, command: str) -> str:
    """Start ``command`` in the background inside the (started) sandbox; its provider id."""
    provider_id = await started(app, sandbox_id)
    provider: SandboxProvider = app.state.sandboxes.provider
    if "echo_server" in command:
        await provider.write_file(provider_id, "/workspace/echo_server.py", ECHO)
    await provider.start_session(provider_id, "server", command)
    return provider_id


async def _until_up(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
    """Poll the relay until the sandbox's server answers (502 while it is still starting)."""
    for _ in range(200):
        response = await client.get(url, headers=headers)
        if response.status_code != 502:
            assert response.status_code == 200, response.text
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing answered at {url}: {response.text}")


async def test_http_server_in_the_sandbox_is_reachable(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    assert (await upload(client, user, sandbox_id, "hello.txt", b"hello relay")).status_code == 201
    await _serve(app, sandbox_id, "python3 -m http.server 8001")
    base = f"/api/sandboxes/{sandbox_id}/ports/8001"
    await _until_up(client, f"{base}/", user.headers)

    listing = await client.get(f"{base}/", headers=user.headers)
    assert listing.status_code == 200
    assert "Directory listing for /" in listing.text
    assert "hello.txt" in listing.text
    assert listing.headers["content-type"].startswith("text/html")
    file = await client.get(f"{base}/hello.txt", headers=user.headers)
    assert file.status_code == 200 and file.content == b"hello relay"
    head = await client.head(f"{base}/hello.txt", headers=user.headers)
    assert head.status_code == 200 and head.headers["content-length"] == "11"
    missing = await client.get(f"{base}/nope.txt", headers=user.headers)
    assert missing.status_code == 404  # the sandbox server's own 404, passed on

    # no trailing slash: a redirect to the slash form (relative links resolve under it)
    bare = await client.get(f"{base}?a=1&token={user.token}", headers=user.headers)
    assert bare.status_code in (307, 308)
    assert bare.headers["location"] == f"{base}/?a=1&token={user.token}"
    followed = await client.get(base, headers=user.headers, follow_redirects=True)
    assert followed.status_code == 200 and "hello.txt" in followed.text


async def test_credentials_never_reach_the_sandbox(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    await _serve(app, sandbox_id, "python3 echo_server.py 9000")
    base = f"/api/sandboxes/{sandbox_id}/ports/9000"
    await _until_up(client, f"{base}/", user.headers)

    seen = await client.get(
        f"{base}/api/items?a=1&b=two",
        headers={**user.headers, "X-Custom": "kept", "Cookie": f"c=1; shoal_relay={user.token}"},
    )
    assert seen.status_code == 200, seen.text
    got: dict[str, Any] = seen.json()
    assert got["method"] == "GET"
    assert got["target"] == "/api/items?a=1&b=two"
    assert "authorization" not in got["headers"]
    assert got["headers"]["x-custom"] == "kept"
    assert got["headers"]["x-forwarded-prefix"] == base
    assert got["headers"]["cookie"] == "c=1"  # the relay's own cookie is not passed on
    assert user.token not in seen.text

    # odd but valid paths reach the server as sent
    odd = await client.get(f"{base}/a%20b/%C3%A9.txt?q=a%2Fb", headers=user.headers)
    assert odd.status_code == 200, odd.text
    assert odd.json()["target"] == "/a%20b/%C3%A9.txt?q=a%2Fb"

    # the JWT in ?token= alone (a browser) authenticates; it is traded for an HttpOnly cookie
    # scoped to this port's path before the page loads (the page's scripts never see it in
    # their URL), and then the cookie alone authorises the page and its assets
    browser = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    async with browser:
        by_query = await browser.get(f"{base}/page?x=1&token={user.token}")
        assert by_query.status_code == 303
        assert by_query.headers["location"] == f"{base}/page?x=1"
        cookie = by_query.headers["set-cookie"]
        assert cookie.startswith(f"shoal_relay={user.token};")
        assert "HttpOnly" in cookie and f"Path={base}/" in cookie
        page = await browser.get(f"{base}/page?x=1")
        assert page.status_code == 200, page.text
        assert page.json()["target"] == "/page?x=1"
        asset = await browser.get(f"{base}/static/app.js")
        assert asset.status_code == 200
        assert user.token not in page.text + asset.text
        elsewhere = await browser.get(f"/api/sandboxes/{sandbox_id}/files")
        assert elsewhere.status_code == 404  # the cookie is not a credential for the API

    key = await client.post("/api/api-keys", json={"name": "relay"}, headers=user.headers)
    secret = key.json()["secret"]
    with_key = await client.get(f"{base}/k", headers={"X-API-Key": secret})
    assert with_key.status_code == 200
    assert "x-api-key" not in with_key.json()["headers"]
    assert secret not in with_key.text

    # request bodies and methods pass through
    posted = await client.post(f"{base}/submit", json={"n": 1}, headers=user.headers)
    assert posted.status_code == 200, posted.text
    assert (posted.json()["method"], json.loads(posted.json()["body"])) == ("POST", {"n": 1})

    async def chunks() -> Any:
        yield b"part one, "
        yield b"part two"

    streamed = await client.put(f"{base}/upload", content=chunks(), headers=user.headers)
    assert streamed.status_code == 200, streamed.text
    assert streamed.json()["body"] == "part one, part two"

    # an absolute redirect of the app stays under the relay path
    redirect = await client.get(f"{base}/redirect", headers=user.headers)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == f"{base}/login"


async def test_public_project_ports_are_readable_by_anyone(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    _, sandbox_id = await new_sandbox(client, user, public=True)
    await _serve(app, sandbox_id, "python3 echo_server.py 9001")
    url = f"/api/sandboxes/{sandbox_id}/ports/9001/public"
    await _until_up(client, url, {})
    assert (await client.get(url)).json()["target"] == "/public"


async def test_closed_port_and_stopped_sandbox_are_clear_errors(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    base = f"/api/sandboxes/{sandbox_id}/ports"
    # never started: nothing can listen
    never = await client.get(f"{base}/8000/", headers=user.headers)
    assert never.status_code == 409, never.text
    assert never.json()["code"] == "sandbox_not_running"

    await started(app, sandbox_id)
    closed = await client.get(f"{base}/8765/", headers=user.headers)
    assert closed.status_code == 502, closed.text
    assert closed.json()["code"] == "sandbox_error"
    assert "8765" in closed.json()["detail"]

    for port in ("0", "65536", "99999"):
        bad = await client.get(f"{base}/{port}/", headers=user.headers)
        assert bad.status_code == 400, (port, bad.text)
    assert (await client.get(f"{base}/http/", headers=user.headers)).status_code == 422

    await app.state.sandboxes.stop(uuid.UUID(sandbox_id))
    stopped = await client.get(f"{base}/8765/", headers=user.headers)
    assert stopped.status_code == 409, stopped.text
    assert stopped.json()["code"] == "sandbox_not_running"


async def test_websocket_round_trip(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser, live_server: str
) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    await _serve(app, sandbox_id, "python3 echo_server.py 9002")
    base = f"/api/sandboxes/{sandbox_id}/ports/9002"
    await _until_up(client, f"{base}/", user.headers)

    url = f"ws://{live_server}{base}/ws?x=1&token={user.token}"
    async with asyncio.timeout(20), connect(url, open_timeout=10) as ws:
        hello = json.loads(await ws.recv())
        assert hello["target"] == "/ws?x=1"
        assert "authorization" not in hello["headers"]
        assert user.token not in json.dumps(hello)
        assert hello["headers"]["x-forwarded-prefix"] == base
        await ws.send("hello")
        assert await ws.recv() == "echo:hello"
        await ws.send(b"\x01\x02\x03")
        assert await ws.recv() == b"\x03\x02\x01"
        big = "z" * 200_000  # several frames and reads on both legs
        await ws.send(big)
        assert await ws.recv() == "echo:" + big

    # a bearer header works as well as ?token=
    async with (
        asyncio.timeout(20),
        connect(
            f"ws://{live_server}{base}/other",
            additional_headers=user.headers,
            open_timeout=10,
        ) as ws,
    ):
        assert json.loads(await ws.recv())["target"] == "/other"
        await ws.send("again")
        assert await ws.recv() == "echo:again"


async def test_websocket_without_access_is_refused(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: TestUser,
    other_user: TestUser,
    live_server: str,
) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    await _serve(app, sandbox_id, "python3 echo_server.py 9003")
    path = f"/api/sandboxes/{sandbox_id}/ports/9003/ws"
    await _until_up(client, f"/api/sandboxes/{sandbox_id}/ports/9003/", user.headers)

    key = await client.post("/api/api-keys", json={"name": "ws"}, headers=user.headers)
    secret = key.json()["secret"]
    # nobody, another tenant, a bad token, and the owner's API key in the URL (keys never go
    # in URLs): closed with 1008 before the handshake completes
    for query in ("", f"token={other_user.token}", "token=garbage", f"token={secret}"):
        assert await _asgi_ws_close_code(app, path, query) == 1008, query
        with pytest.raises(InvalidStatus):
            async with asyncio.timeout(20):
                await connect(f"ws://{live_server}{path}?{query}", open_timeout=10)
    # the owner gets through, with a JWT in the URL or the API key in a header
    for url, headers in (
        (f"ws://{live_server}{path}?token={user.token}", {}),
        (f"ws://{live_server}{path}", {"X-API-Key": secret}),
    ):
        async with asyncio.timeout(20), connect(url, additional_headers=headers) as ws:
            hello = json.loads(await ws.recv())
            assert hello["target"] == "/ws"
            assert "x-api-key" not in hello["headers"]


async def _asgi_ws_close_code(app: FastAPI, path: str, query: str) -> int | None:
    """Open a WebSocket on the ASGI app directly; the close code it answers the connect with."""
    sent: list[dict[str, Any]] = []
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "subprotocols": [],
        "state": {},
    }

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] in ("websocket.close", "websocket.accept"):
            await inbox.put({"type": "websocket.disconnect", "code": 1000})

    await asyncio.wait_for(app(scope, inbox.get, send), 20)
    assert sent, "the app answered nothing"
    assert sent[0]["type"] == "websocket.close", sent
    return sent[0].get("code")
