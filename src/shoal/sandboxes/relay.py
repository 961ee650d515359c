"""The port relay: HTTP and WebSocket traffic to ``localhost:PORT`` inside a sandbox.

Two transports, one relay. Providers with raw ports (local, fake) give a byte stream to the
port (``open_port``); HTTP/1.1 runs over it through httpcore with a network backend that dials
the sandbox instead of the network. Providers with preview links (Daytona) give a URL and
headers; the same code then speaks to that URL. WebSockets use the sans-I/O protocol of the
``websockets`` library over the same two transports.

What the sandbox sees: the request minus hop-by-hop headers, minus the caller's credentials
(``Authorization``, ``X-API-Key``, the ``token`` query parameter) — a sandbox never learns a
user's token — plus ``X-Forwarded-Prefix`` so apps can build links under the relay path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpcore

from shoal.sandbox import PortConnection, SandboxProvider

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
CREDENTIALS = frozenset({"authorization", "x-api-key"})
WS_HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
    }
)
_PATH_SAFE = "/:@!$&'()*+,;=~"  # RFC 3986 path characters kept as they are


@dataclass(frozen=True, slots=True)
class Target:
    """Where a relayed request goes: ``link`` for preview-link providers, else a raw port."""

    provider: SandboxProvider
    provider_id: str
    port: int
    link_url: str | None = None
    link_headers: Mapping[str, str] | None = None

    def url(self, path: str, query: str) -> str:
        base = self.link_url.rstrip("/") if self.link_url else f"http://localhost:{self.port}"
        # ``path`` arrives percent-decoded: encode it again (spaces, non-ASCII) for the wire
        encoded = quote(path.lstrip("/"), safe=_PATH_SAFE)
        return f"{base}/{encoded}" + (f"?{query}" if query else "")


async def target(provider: SandboxProvider, provider_id: str, port: int) -> Target:
    preview = getattr(provider, "preview_link", None)
    link = None if preview is None else await preview(provider_id, port)
    if link is None:
        return Target(provider, provider_id, port)
    return Target(provider, provider_id, port, link.url, dict(link.headers))


def clean_query(query: str) -> str:
    """The query string without shoal's ``token`` parameter."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k != "token"])


RELAY_COOKIE = "shoal_relay"
"""The relay's own cookie: the JWT a browser first sent as ``?token=``, scoped to one port's
relay path, so the page's assets and follow-up requests are authorised too."""


def forward_headers(
    headers: Iterable[tuple[str, str]], *, prefix: str, drop: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    out = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP | CREDENTIALS | drop:
            continue
        if lowered == "cookie":
            value = _without_relay_cookie(value)
            if not value:
                continue
        out.append((name, value))
    out.append(("x-forwarded-prefix", prefix))
    return out


def _without_relay_cookie(header: str) -> str:
    pairs = [p.strip() for p in header.split(";")]
    return "; ".join(p for p in pairs if p and p.split("=", 1)[0].strip() != RELAY_COOKIE)


def body_framing(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """How the relayed request's body is framed: the caller's ``Content-Length`` (the body is
    passed on unchanged), else chunked when the caller sent chunks. Without either header the
    HTTP/1.1 client sends no body at all (``forward_headers`` drops both as hop-by-hop)."""
    length = headers.get("content-length")
    if length is not None:
        return [("content-length", length)]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return [("transfer-encoding", "chunked")]
    return []


# -- HTTP ----------------------------------------------------------------------------------------


class _Stream(httpcore.AsyncNetworkStream):
    """An httpcore network stream over a sandbox port connection."""

    def __init__(self, conn: PortConnection) -> None:
        self.conn = conn

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await asyncio.wait_for(self.conn.reader.read(max_bytes), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.conn.writer.write(buffer)
        await asyncio.wait_for(self.conn.writer.drain(), timeout)

    async def aclose(self) -> None:
        await self.conn.aclose()

    def get_extra_info(self, info: str) -> Any:
        return None


class _SandboxBackend(httpcore.AsyncNetworkBackend):
    """Dials ``localhost:PORT`` inside the sandbox, whatever host the request names."""

    def __init__(self, provider: SandboxProvider, provider_id: str) -> None:
        self.provider = provider
        self.provider_id = provider_id

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self.provider.open_port(self.provider_id, port))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not relayed")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(slots=True)
class RelayedResponse:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]


async def send_http(
    dest: Target,
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: AsyncIterator[bytes],
    timeout: float,  # noqa: ASYNC109
) -> RelayedResponse:
    """Relay one request; the response body streams until it ends (then all is closed)."""
    url = dest.url(path, query)
    host = urlsplit(url).netloc
    sent = [("host", host), *headers, *(dest.link_headers or {}).items()]
    if dest.link_url is None:
        pool = httpcore.AsyncConnectionPool(
            network_backend=_SandboxBackend(dest.provider, dest.provider_id), max_connections=1
        )
    else:
        pool = httpcore.AsyncConnectionPool(max_connections=1)
    request = httpcore.Request(
        method,
        url,
        headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in sent],
        content=body,
        extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout}},
    )
    try:
        response = await pool.handle_async_request(request)
    except BaseException:
        await pool.aclose()
        raise

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_stream():
                yield chunk
        finally:
            await response.aclose()
            await pool.aclose()

    out_headers = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in response.headers
        if k.decode("latin-1").lower() not in HOP_BY_HOP - {"content-length"}
    ]
    return RelayedResponse(response.status, out_headers, stream())


def rewrite_location(value: str, *, prefix: str) -> str:
    """An absolute-path redirect (``/login``) stays under the relay path."""
    if value.startswith("/") and not value.startswith("//"):
        return prefix.rstrip("/") + value
    return value


# -- WebSocket -----------------------------------------------------------------------------------


async def open_byte_stream(dest: Target) -> PortConnection:
    """A raw connection for a WebSocket: the sandbox port, or the preview link's host."""
    if dest.link_url is None:
        return await dest.provider.open_port(dest.provider_id, dest.port)
    parts = urlsplit(dest.link_url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    context = ssl.create_default_context() if secure else None
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
    return PortConnection(reader, writer)


def ws_url(dest: Target, path: str, query: str) -> str:
    url = dest.url(path, query)
    return "ws" + url[len("http") :] if url.startswith("http") else url


async def close_quietly(conn: PortConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.aclose()
