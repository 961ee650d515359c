"""Helpers shared by test packages: a free port, and the app behind a real uvicorn server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shoal.kit.threaded_server import serve_here


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve_app(app: FastAPI, *, access_log: bool = False) -> AsyncIterator[str]:
    """``app`` (its lifespan already running, e.g. by the ``app`` fixture) behind uvicorn on a
    free 127.0.0.1 port in this event loop; yields ``host:port``. Streams, WebSockets and
    access logs need a real server; the app's DB pool is bound to this loop."""
    async with serve_here(app, access_log=access_log, timeout_graceful_shutdown=1) as address:
        yield address
