"""A tiny local HTTP server (stdlib, background thread) for the web tools, and a harness for
the sandbox tools over any provider."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shoal.config import Settings
from shoal.sandbox import SandboxProvider, ScriptedSandbox
from shoal.sandbox.base import SessionInfo
from shoal.tools import StaticSandbox, ToolContext, ToolRegistry, ToolResult, sandbox_tools

_SAME: Any = object()


class Site:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.target = f"127.0.0.1:{self.port}"
        self.redirect_to = ""


def _handler(site_ref: list[Site]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def _send(self, status: int, body: bytes, ctype: str = "text/html") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def do_GET(self) -> None:
            site = site_ref[0]
            if self.path == "/page":
                html = (
                    "<html><head><title>Test Page</title><style>p{}</style></head><body>"
                    "<h1>Hello</h1><script>evil()</script><p>Paragraph &amp; text.</p>"
                    "</body></html>"
                )
                self._send(200, html.encode())
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", site.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/big":
                self._send(200, b"x" * 200_000, "text/plain")
            elif self.path == "/slow":
                time.sleep(1.0)
                self._send(200, b"late", "text/plain")
            elif self.path == "/image":
                self._send(200, b"\x89PNG....", "image/png")
            else:
                self._send(404, b"nope", "text/plain")

    return Handler


def _serve() -> tuple[Site, ThreadingHTTPServer]:
    ref: list[Site] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    server.daemon_threads = True
    site = Site(server)
    ref.append(site)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return site, server


@pytest.fixture
def site() -> Iterator[Site]:
    site, server = _serve()
    yield site
    server.shutdown()
    server.server_close()


@pytest.fixture
def other_site() -> Iterator[Site]:
    site, server = _serve()
    yield site
    server.shutdown()
    server.server_close()


# -- sandbox tools --------------------------------------------------------------------------------


class SandboxHarness:
    """Sandbox tools over a provider through :class:`StaticSandbox`, as the registry calls them.

    ``output`` collects the live ``(stream, text)`` pieces, ``exec_seconds`` every metered
    exec (via ``record_exec``), ``sessions_seen`` the sessions reported for metering.
    """

    def __init__(self, provider: SandboxProvider, sandbox_id: str, **settings: Any) -> None:
        self.provider = provider
        self.sandbox_id = sandbox_id
        self.exec_seconds: list[float] = []
        self.sessions_seen: list[SessionInfo] = []
        self.access = StaticSandbox(
            provider,
            sandbox_id,
            base_url="http://shoal.test",
            on_exec=self._on_exec,
            on_sessions=self._on_sessions,
        )
        self.registry = ToolRegistry(sandbox_tools(Settings(**settings)))
        self.output: list[tuple[str, str]] = []

    async def _on_exec(self, seconds: float) -> None:
        self.exec_seconds.append(seconds)

    async def _on_sessions(self, sessions: list[SessionInfo]) -> None:
        self.sessions_seen.extend(sessions)

    async def _emit(self, stream: str, text: str) -> None:
        self.output.append((stream, text))

    def context(self, sandbox: Any = _SAME) -> ToolContext:
        box = self.access if sandbox is _SAME else sandbox
        return ToolContext(thread_id="t", tool_call_id="c1", emit_output=self._emit, sandbox=box)

    async def call(self, name: str, **arguments: Any) -> ToolResult:
        return await self.registry.execute(name, arguments, self.context())

    def live_text(self) -> str:
        return "".join(text for _, text in self.output)


@pytest.fixture
async def fake() -> AsyncIterator[ScriptedSandbox]:
    provider = ScriptedSandbox()
    yield provider
    await provider.aclose()


@pytest.fixture
async def box(fake: ScriptedSandbox) -> SandboxHarness:
    """Sandbox tools over a created but STOPPED fake sandbox (the tools start it)."""
    info = await fake.create(sandbox_id="box1")
    return SandboxHarness(fake, info.sandbox_id)
