"""Shared pieces for the runs tests: a prompt-driven fake model, API helpers, a real server.

``PromptModel`` decides each answer from the run's last user message, so one fake serves every
test of a module (and both backends) without a per-test script:

- ``stall`` — one text delta, then hangs until cancelled (a provider that stops answering);
- ``slow <n> <delay>`` — ``n`` one-letter deltas, ``delay`` seconds apart;
- anything else — a short answer at once.

``live_server`` serves the app on a real socket with uvicorn: httpx's ASGI transport buffers a
whole response, so only a real server shows that an SSE stream is incremental.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.db.models import AgentRun
from shoal.llm.base import ChatModel
from shoal.llm.scripted import ScriptedChatModel, ScriptedTurn
from shoal.llm.types import ChatRequest, Chunk, TextDelta
from shoal.runs.repository import RunRepository, event_dict
from shoal.streaming.sse import SSEEvent, SSEParser
from tests.conftest import TestUser
from tests.support import serve_app

TERMINAL = ("completed", "failed", "stopped")


class PromptModel(ScriptedChatModel):
    """A ChatModel fake whose answer is chosen by the prompt (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.prompts: list[str] = []
        self.cancelled = asyncio.Event()
        self.stalled = asyncio.Event()

    async def wait_stalled(self, timeout: float = 30.0) -> None:
        """Until a ``stall`` answer has sent its first delta (the run is inside the model)."""
        await asyncio.wait_for(self.stalled.wait(), timeout)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        self.requests.append(request)
        prompt = _last_user_text(request)
        self.prompts.append(prompt)
        words = prompt.split()
        if words[:1] == ["stall"]:
            yield TextDelta("partial")
            self.stalled.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if words[:1] == ["slow"]:
            count, delay = int(words[1]), float(words[2])
            text = "".join(chr(ord("a") + i % 26) for i in range(count))
            turn = ScriptedTurn(text=text, chunk_size=1, delay=delay)
        else:
            turn = ScriptedTurn(text=f"echo: {prompt}", delay=0.0)
        for chunk in turn.chunks(request):
            await asyncio.sleep(turn.delay)
            yield chunk


def _last_user_text(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content)
    return ""


@pytest.fixture
def chat_model() -> ChatModel:
    return PromptModel()


# -- API helpers ---------------------------------------------------------------------------------


async def new_thread(
    client: httpx.AsyncClient, user: TestUser, *, project_id: str | None = None
) -> tuple[str, str]:
    """A new thread (in a new project unless ``project_id``): ``(thread_id, project_id)``."""
    body: dict[str, Any] = {"name": "t"}
    if project_id is not None:
        body["project_id"] = project_id
    response = await client.post("/api/threads", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["thread_id"]), str(response.json()["project_id"])


async def start_run(
    client: httpx.AsyncClient, user: TestUser, thread_id: str, prompt: str, **options: Any
) -> str:
    response = await client.post(
        f"/api/threads/{thread_id}/agent/start",
        json={"prompt": prompt, **options},
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["agent_run_id"])


async def get_run(client: httpx.AsyncClient, user: TestUser, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/agent-run/{run_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_run(
    client: httpx.AsyncClient,
    user: TestUser,
    run_id: str,
    statuses: tuple[str, ...] = TERMINAL,
    *,
    timeout: float = 30.0,  # generous: only a failing test waits this long on a noisy machine
) -> dict[str, Any]:
    """Poll the run until its status is one of ``statuses``; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        run = await get_run(client, user, run_id)
        if run["status"] in statuses:
            return run
        if loop.time() > deadline:
            raise AssertionError(f"run {run_id} never reached {statuses} in {timeout}s: {run}")
        await asyncio.sleep(0.02)


async def stored_events(app: FastAPI, run_id: str | uuid.UUID) -> list[dict[str, Any]]:
    """The run's events as stored, in the wire shape (what a replay must return)."""
    parsed = uuid.UUID(str(run_id))
    async with app.state.session_factory() as session:
        repo = RunRepository(session)
        run = await repo.get(parsed)
        assert run is not None
        rows = await repo.events_after(parsed, 0, limit=100_000)
        return [event_dict(None, r, run_id=run.id, thread_id=run.thread_id) for r in rows]


async def runs_by_status(app: FastAPI, *statuses: str) -> list[AgentRun]:
    from sqlalchemy import select

    async with app.state.session_factory() as session:
        result = await session.execute(select(AgentRun).where(AgentRun.status.in_(statuses)))
        return list(result.scalars().all())


def assert_gapless(events: list[dict[str, Any]], *, first: int = 1) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(first, first + len(events))), seqs


# -- a real HTTP server --------------------------------------------------------------------------


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    """The app (lifespan already run by the ``app`` fixture) behind uvicorn on a free port."""
    async with serve_app(app) as address:
        yield f"http://{address}"


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the live server (no connection cap: some tests open 100 streams)."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
    async with httpx.AsyncClient(
        base_url=live_server, limits=limits, timeout=httpx.Timeout(20.0)
    ) as client:
        yield client


class StreamReader:
    """Reads an SSE response incrementally: events, and the comments (pings) seen so far."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = SSEParser()
        self._chunks = response.aiter_bytes()
        self._ready: list[SSEEvent] = []
        self.ended = False

    async def next(self, timeout: float = 5.0) -> SSEEvent | None:
        """The next event; None when the server closed the stream."""
        while not self._ready:
            if self.ended:
                return None
            try:
                chunk = await asyncio.wait_for(anext(self._chunks), timeout)
            except StopAsyncIteration:
                self.ended = True
                self._ready.extend(self.parser.close())
                continue
            self._ready.extend(self.parser.feed(chunk))
        return self._ready.pop(0)

    async def wait_comment(self, text: str, *, timeout: float = 5.0) -> None:
        """Read until a comment line ``text`` (e.g. ``ping``) arrives (events stay queued)."""
        async with asyncio.timeout(timeout):
            while text not in self.parser.comments:
                self._ready.extend(self.parser.feed(await anext(self._chunks)))

    async def until(
        self, stop: Callable[[SSEEvent], bool], *, timeout: float = 10.0
    ) -> list[SSEEvent]:
        """Events up to and including the first one for which ``stop`` is true."""
        out: list[SSEEvent] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                if event is None:
                    raise AssertionError(f"stream ended before the expected event: {out}")
                out.append(event)
                if stop(event):
                    return out

    async def rest(self, *, timeout: float = 10.0) -> list[SSEEvent]:
        """Every event until the server closes the stream."""
        out: list[SSEEvent] = []
        async with asyncio.timeout(timeout):
            while (event := await self.next(timeout)) is not None:
                out.append(event)
        return out


def is_terminal(event: SSEEvent) -> bool:
    data: Mapping[str, Any] = event.data
    return data["type"] == "run_status" and data["data"]["status"] in TERMINAL
