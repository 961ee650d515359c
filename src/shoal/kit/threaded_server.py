"""An ASGI app under uvicorn on a free 127.0.0.1 port: in a thread of its own
(:class:`ThreadedServer`) or in the caller's event loop (:func:`serve_here`).

The fakes shoal ships (the OpenAI-compatible LLM server, the Daytona API) serve tests and
benchmarks from a thread: their own event loop, so the code under test never shares one with
them. Tests and benchmarks serve the app under test itself in their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

START_TIMEOUT_SECONDS = 10.0


def _listening_socket(host: str) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says
    # TCP; with proto 0 Nagle + delayed ACKs add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@contextlib.asynccontextmanager
async def serve_here(app: Any, **config: Any) -> AsyncIterator[str]:
    """``app`` (its lifespan already entered) served in this event loop on a free 127.0.0.1
    port; yields ``host:port``. ``config`` goes to ``uvicorn.Config``; uvicorn's signal
    handlers stay off (Ctrl-C remains the caller's)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    sock = _listening_socket("127.0.0.1")
    port = sock.getsockname()[1]
    settings = {"lifespan": "off", "log_config": None, "access_log": False, **config}
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, **settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


class ThreadedServer:
    """``start()`` serves ``app`` and returns once it accepts connections; ``stop()`` ends it.
    ``config`` goes to ``uvicorn.Config`` (lifespan off, quiet logs and the asyncio loop unless
    given); ``on_exit`` runs in the server's loop after it stops serving."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        host: str = "127.0.0.1",
        on_exit: Callable[[], Awaitable[None]] | None = None,
        **config: Any,
    ) -> None:
        self.app = app
        self.name = name
        self.host = host
        self.port = 0
        self.on_exit = on_exit
        self.config = {
            "lifespan": "off",
            "log_level": "warning",
            "access_log": False,
            "loop": "asyncio",
            "timeout_graceful_shutdown": 1,
            **config,
        }
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        import uvicorn

        sock = _listening_socket(self.host)
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, **self.config))
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"{self.name}-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not getattr(self._server, "started", False):
            if self._error is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self._error!r}")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=5)
        self._thread = None

    def _run(self, sock: socket.socket) -> None:
        async def serve() -> None:
            try:
                await self._server.serve(sockets=[sock])
            finally:
                if self.on_exit is not None:
                    await self.on_exit()

        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
        finally:
            sock.close()
