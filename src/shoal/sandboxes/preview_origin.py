"""The port relay on an origin of its own (``SHOAL_PREVIEW_URL``).

A page a sandbox serves runs its scripts on the origin it is served from. On shoal's own
origin they could call shoal's API as that origin, and read whatever a web UI there keeps in
its storage; on a separate origin they reach nothing of shoal. With a preview origin set:

- requests for that host get the relay (``/api/sandboxes/{id}/ports/{port}/…``) and nothing
  else (404);
- relay requests to any other host are redirected there (307, same path and query), WebSocket
  handshakes refused (a browser cannot follow a redirect there).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from shoal.kit.asgi import send_error

RELAY_PATH = re.compile(r"^/api/sandboxes/[^/]+/ports/[^/]+(/.*)?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class PreviewOriginMiddleware:
    def __init__(self, app: ASGIApp, *, preview_url: str) -> None:
        self.app = app
        parts = urlsplit(preview_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = (parts.hostname or "").lower()
        self.port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        self.default_port = _DEFAULT_PORTS.get(parts.scheme)

    def _is_preview(self, scope: Scope) -> bool:
        host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
        try:
            parts = urlsplit(f"//{host}")
            name, port = (parts.hostname or "").lower(), parts.port
        except ValueError:  # a malformed Host: not the preview origin
            return False
        return bool(name) and name == self.host and (port or self.default_port) == self.port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        relay = bool(RELAY_PATH.match(scope.get("path", "")))
        preview = self._is_preview(scope)
        if relay == preview:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        elif preview:
            await send_error(send, 404, "This origin serves sandbox ports only.", "not_found")
        else:
            query = scope.get("query_string", b"").decode("latin-1")
            location = self.origin + scope["path"] + (f"?{query}" if query else "")
            await send(
                {
                    "type": "http.response.start",
                    "status": 307,
                    "headers": [
                        (b"location", location.encode("latin-1")),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
