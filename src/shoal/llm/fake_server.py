"""A scripted, OpenAI-compatible chat-completions server for tests and benchmarks.

It runs uvicorn in a background thread on ``127.0.0.1:<free port>`` and answers
``POST /v1/chat/completions`` (SSE when ``stream`` is true, JSON otherwise) from a queue of
scripted :class:`FakeTurn` objects. Like real providers it answers 400 when a ``role: tool``
message does not follow an assistant ``tool_calls`` entry with the same id (or an assistant's
tool call gets no result). Every request body is recorded, and so is a client hanging up.

    async with FakeLLMServer() as server:
        server.script(FakeTurn(text="Hello"), FakeTurn.error(429))
        ... LiteLLMChatModel(api_base=server.url + "/v1", api_key="sk-test") ...
        server.requests  # the recorded bodies
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from shoal.kit.threaded_server import ThreadedServer
from shoal.llm.fake_sse import check_tool_ordering, render_turn_chunks, render_turn_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class FakeToolCall:
    """A native tool call; ``arguments`` (a dict is JSON-encoded) streams in ``fragments``."""

    name: str
    arguments: str | dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    fragments: int = 3

    def arguments_text(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass
class FakeTurn:
    """One scripted response.

    ``text`` (a str is split into ``chunk_size`` pieces, a list is streamed as given);
    ``tool_calls`` native calls; ``reasoning`` streamed as ``reasoning_content``;
    ``finish_reason`` defaults to ``tool_calls``/``stop``; ``status`` ≠ 200 answers an error;
    ``stall_after_first_chunk`` sleeps that long after the first chunk; ``usage`` as
    ``(prompt_tokens, completion_tokens)`` (default: computed), ``include_usage=False`` omits it.
    """

    text: str | list[str] = ""
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    reasoning: str = ""
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None
    include_usage: bool = True
    status: int = 200
    error_message: str = ""
    stall_after_first_chunk: float = 0.0
    chunk_delay: float = 0.0
    chunk_size: int = 8

    @classmethod
    def error(cls, status: int, message: str = "") -> FakeTurn:
        return cls(status=status, error_message=message or f"fake provider error {status}")

    def text_chunks(self) -> list[str]:
        if isinstance(self.text, list):
            return list(self.text)
        size = max(1, self.chunk_size)
        return [self.text[i : i + size] for i in range(0, len(self.text), size)]


@dataclass
class RecordedRequest:
    body: dict[str, Any]
    status: int = 200
    started_at: float = field(default_factory=time.monotonic)
    client_disconnected: bool = False
    completed: bool = False


DEFAULT_TURN_TEXT = "fake-llm: no scripted turn left"


class FakeLLMServer:
    """The fake provider. Use as an async (or plain) context manager."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.records: list[RecordedRequest] = []
        self._turns: deque[FakeTurn] = deque()
        self._lock = threading.Lock()
        self._http = ThreadedServer(
            self._app, name="fake-llm", host=host, http="h11", interface="asgi3"
        )

    # -- public API -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._http.url

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [record.body for record in self.records]

    @property
    def disconnects(self) -> int:
        with self._lock:
            return sum(1 for record in self.records if record.client_disconnected)

    def script(self, *turns: FakeTurn) -> FakeLLMServer:
        with self._lock:
            self._turns.extend(turns)
        return self

    @property
    def pending_turns(self) -> int:
        with self._lock:
            return len(self._turns)

    def start(self) -> FakeLLMServer:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeLLMServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- ASGI -----------------------------------------------------------------------------------
    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        path = str(scope.get("path", ""))
        if scope.get("method") != "POST" or not path.endswith("/chat/completions"):
            await _send_json(send, 404, {"error": {"message": "not found"}})
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            await _send_json(send, 400, _error_body(400, "request body is not a JSON object"))
            return
        record = RecordedRequest(body=payload)
        with self._lock:
            self.records.append(record)
        try:
            await self._answer(payload, record, receive, send)
        except asyncio.CancelledError:  # the server is stopping: end the response quietly
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _answer(
        self, payload: dict[str, Any], record: RecordedRequest, receive: Receive, send: Send
    ) -> None:
        problem = check_tool_ordering(payload.get("messages"))
        if problem is not None:  # rejected before a scripted turn is used, as a provider would
            await self._reject(send, record, 400, problem)
            return
        with self._lock:
            turn = self._turns.popleft() if self._turns else FakeTurn(text=DEFAULT_TURN_TEXT)
        if turn.status != 200:
            await self._reject(send, record, turn.status, turn.error_message)
            return
        model = str(payload.get("model", "fake-model"))
        if not payload.get("stream"):
            await _send_json(send, 200, render_turn_json(turn, model))
            record.completed = True
            return
        await self._stream(turn, payload, model, record, receive, send)

    @staticmethod
    async def _reject(send: Send, record: RecordedRequest, status: int, message: str) -> None:
        record.status = status
        await _send_json(send, status, _error_body(status, message))
        record.completed = True

    async def _stream(
        self,
        turn: FakeTurn,
        payload: dict[str, Any],
        model: str,
        record: RecordedRequest,
        receive: Receive,
        send: Send,
    ) -> None:
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        chunks = render_turn_chunks(turn, model, include_usage=include_usage)
        hung_up = asyncio.Event()
        finished = False

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not finished:
                        hung_up.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            for position, chunk in enumerate(chunks):
                if hung_up.is_set():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                delay = turn.stall_after_first_chunk if position == 0 else turn.chunk_delay
                if delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(hung_up.wait(), timeout=delay)
            if not hung_up.is_set():
                finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                record.completed = True
        except OSError:
            hung_up.set()
        finally:
            await asyncio.sleep(0)
            if hung_up.is_set():
                record.client_disconnected = True
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(parts)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data, "more_body": False})


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 400: "invalid_request_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
