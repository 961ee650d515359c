"""A tiny local HTTP server (stdlib, background thread) for the web tools."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


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
