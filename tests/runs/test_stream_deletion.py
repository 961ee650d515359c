"""Deleting a thread (or its project) ends its open streams; the streams of a deleted thread
or run are 404 afterwards. Pings are 15 s apart here (the longest allowed): a stream that
only notices at its next ping check would outlive the generous bounds below."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.runs.runtime import thread_channel
from shoal.runs.stream import DELETED
from tests.conftest import TestUser
from tests.runs.conftest import (
    PromptModel,
    StreamReader,
    is_terminal,
    new_thread,
    start_run,
    wait_run,
)
from tests.streaming.conftest import REDIS_URL, redis_admin

ENDS_WITHIN = 8.0  # seconds; well under the 15 s ping interval


@asynccontextmanager
async def _open(http: httpx.AsyncClient, url: str, user: TestUser) -> AsyncIterator[StreamReader]:
    async with http.stream("GET", url, headers=user.headers) as response:
        assert response.status_code == 200, await response.aread()
        yield StreamReader(response)


async def _ended(reader: StreamReader, timeout: float = ENDS_WITHIN) -> list[Any]:
    """The events left until the server closes the stream (fails if it stays open)."""
    return await reader.rest(timeout=timeout)


async def test_deleting_an_idle_thread_ends_its_stream(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "hi")
    await wait_run(client, user, run_id)
    url = f"/api/threads/{thread_id}/stream"
    async with _open(http, url, user) as reader:
        await reader.until(lambda e: is_terminal(e) and e.data["run_id"] == run_id)
        deleted = await client.delete(f"/api/threads/{thread_id}", headers=user.headers)
        assert deleted.status_code == 204
        assert await _ended(reader) == []
    assert (await http.get(url, headers=user.headers)).status_code == 404
    assert (await http.get(f"{url}?after=now", headers=user.headers)).status_code == 404
    run_url = f"/api/agent-run/{run_id}/stream"
    assert (await http.get(run_url, headers=user.headers)).status_code == 404


async def test_deleting_a_project_ends_the_streams_of_its_live_run(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, chat_model: PromptModel
) -> None:
    """A running run is deleted with its project: the run's worker is fenced out and never
    writes a terminal event, yet both the thread stream and the run stream end."""
    thread_id, project_id = await new_thread(client, user)
    quiet_id, _ = await new_thread(client, user, project_id=project_id)  # no runs at all
    run_id = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()
    async with (
        _open(http, f"/api/threads/{thread_id}/stream?after=now", user) as thread_stream,
        _open(http, f"/api/agent-run/{run_id}/stream", user) as run_stream,
        _open(http, f"/api/threads/{quiet_id}/stream", user) as quiet_stream,
    ):
        await run_stream.until(lambda e: e.data["type"] == "text_delta")
        deleted = await client.delete(f"/api/projects/{project_id}", headers=user.headers)
        assert deleted.status_code == 204
        ended = await asyncio.gather(
            _ended(thread_stream), _ended(run_stream), _ended(quiet_stream)
        )
    assert not any(is_terminal(e) for events in ended for e in events)
    for url in (
        f"/api/threads/{thread_id}/stream",
        f"/api/threads/{quiet_id}/stream",
        f"/api/agent-run/{run_id}/stream",
    ):
        assert (await http.get(url, headers=user.headers)).status_code == 404


@pytest.mark.parametrize("settings_overrides", [{"sse_ping_seconds": 0.3}], ids=["ping"])
async def test_a_lost_delete_signal_still_ends_the_streams_at_the_next_ping(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    user: TestUser,
    app: FastAPI,
    chat_model: PromptModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bus = app.state.runtime.bus
    signal = bus.signal

    async def lossy(channel: str, message: str) -> None:
        if message != DELETED:
            await signal(channel, message)

    monkeypatch.setattr(bus, "signal", lossy)
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()
    async with (
        _open(http, f"/api/threads/{thread_id}/stream", user) as thread_stream,
        _open(http, f"/api/agent-run/{run_id}/stream", user) as run_stream,
    ):
        await thread_stream.until(lambda e: e.data["type"] == "text_delta")
        await run_stream.until(lambda e: e.data["type"] == "text_delta")
        deleted = await client.delete(f"/api/threads/{thread_id}", headers=user.headers)
        assert deleted.status_code == 204
        await asyncio.gather(_ended(thread_stream), _ended(run_stream))


@pytest.fixture
async def redis_settings() -> dict[str, Any]:
    client = await redis_admin()  # skips (or fails in CI) when Redis is down
    await client.aclose()
    return {"redis_url": REDIS_URL}


@pytest.mark.services
@pytest.mark.parametrize("settings_overrides", [{"redis_url": REDIS_URL}], ids=["redis"])
async def test_the_delete_signal_travels_through_redis(
    redis_settings: dict[str, Any],
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    user: TestUser,
) -> None:
    """With the Redis bus the delete reaches streams by Redis pub/sub (as it would in another
    API process)."""
    thread_id, _ = await new_thread(client, user)
    admin = await redis_admin()
    channel = f"shoal:chan:{thread_channel(thread_id)}"
    try:
        async with _open(http, f"/api/threads/{thread_id}/stream", user) as reader:
            async with asyncio.timeout(10):  # the stream's subscription is confirmed
                while dict(await admin.pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
                    await asyncio.sleep(0.02)
            deleted = await client.delete(f"/api/threads/{thread_id}", headers=user.headers)
            assert deleted.status_code == 204
            assert await _ended(reader) == []
    finally:
        await admin.aclose()
