"""ThreadedServer: an app served from a thread of its own, and gone again after stop()."""

from __future__ import annotations

import socket
import threading
from typing import Any

import httpx
import pytest

from shoal.kit.threaded_server import ThreadedServer


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": threading.current_thread().name.encode()})


def test_serves_from_its_own_thread_until_stopped() -> None:
    exited = threading.Event()

    async def on_exit() -> None:
        exited.set()

    server = ThreadedServer(_hello, name="hello", on_exit=on_exit)
    server.start()
    try:
        answer = httpx.get(server.url, timeout=5)
        assert answer.status_code == 200
        assert answer.text == f"hello-{server.port}"  # not the test's thread
    finally:
        server.stop()
    assert exited.wait(5)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass


def test_a_server_that_cannot_start_says_why() -> None:
    server = ThreadedServer(_hello, name="broken", http="no-such-protocol")
    with pytest.raises(RuntimeError, match="broken did not start"):
        server.start()
    server.stop()
