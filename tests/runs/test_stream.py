"""The run SSE stream over a real HTTP server: incremental, resumable, shared, authenticated."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TestUser
from tests.runs.conftest import (
    PromptModel,
    StreamReader,
    assert_gapless,
    get_run,
    is_terminal,
    new_thread,
    start_run,
    stored_events,
    wait_run,
)
from tests.runs.test_lifecycle import _parse


def _stream_url(run_id: str) -> str:
    return f"/api/agent-run/{run_id}/stream"


async def _read_all(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], *, delay: float = 0.0
) -> list[dict[str, Any]]:
    await asyncio.sleep(delay)
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        events = await StreamReader(response).rest(timeout=20)
    for event in events:
        assert event.id == str(event.data["seq"])
        assert event.event == event.data["type"]
    return [e.data for e in events]


async def test_reconnect_mid_run_continues_exactly_after_the_last_event(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "slow 30 0.05")
    cut = 10
    async with http.stream("GET", _stream_url(run_id), headers=user.headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        head = await StreamReader(response).until(lambda e: e.data["seq"] == cut)
    # We read event `cut` while the run was still going: the stream is live, not buffered.
    assert (await get_run(client, user, run_id))["status"] == "running"
    assert any(e.data["type"] == "text_delta" for e in head)

    tail = await _read_all(http, _stream_url(run_id), {**user.headers, "Last-Event-ID": str(cut)})
    assert tail[0]["seq"] == cut + 1
    events = [e.data for e in head] + tail
    assert_gapless(events)
    assert events[-1]["type"] == "run_status" and events[-1]["data"]["status"] == "completed"
    assert events == await stored_events(app, run_id)
    text = "".join(e["data"]["text"] for e in events if e["type"] == "text_delta")
    assert text == "".join(chr(ord("a") + i % 26) for i in range(30))


async def test_resume_a_finished_run_from_any_cursor(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "slow 12 0")
    await wait_run(client, user, run_id)
    stored = await stored_events(app, run_id)
    end = stored[-1]["seq"]
    assert_gapless(stored)
    assert await _read_all(http, _stream_url(run_id), user.headers) == stored
    for cursor in (1, 5, end - 1):
        by_header = await _read_all(
            http, _stream_url(run_id), {**user.headers, "Last-Event-ID": str(cursor)}
        )
        assert by_header == stored[cursor:]
        by_query = await _read_all(http, f"{_stream_url(run_id)}?after={cursor}", user.headers)
        assert by_query == stored[cursor:]
    # At or past the end of a finished run: 204, so an EventSource stops reconnecting.
    for headers, query in (
        ({"Last-Event-ID": str(end)}, ""),
        ({"Last-Event-ID": str(end + 5)}, ""),
        ({}, f"?after={end}"),
    ):
        response = await http.get(
            f"{_stream_url(run_id)}{query}", headers={**user.headers, **headers}
        )
        assert response.status_code == 204, response.text
        assert response.content == b""
    bad = await http.get(f"{_stream_url(run_id)}?after=abc", headers=user.headers)
    assert bad.status_code == 400


@pytest.mark.parametrize("settings_overrides", [{"sse_ping_seconds": 0.2}], ids=["ping"])
async def test_a_quiet_stream_gets_pings_and_ends_at_stop(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, chat_model: PromptModel
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "stall")
    async with http.stream("GET", _stream_url(run_id), headers=user.headers) as response:
        reader = StreamReader(response)
        await reader.until(lambda e: e.data["type"] == "text_delta")
        await reader.wait_comment("ping", timeout=10.0)
        stop = await client.post(f"/api/agent-run/{run_id}/stop", headers=user.headers)
        assert stop.status_code == 202
        rest = await reader.rest(timeout=20.0)
    assert is_terminal(rest[-1]) and rest[-1].data["data"]["status"] == "stopped"


async def test_query_token_on_the_stream(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    user: TestUser,
    other_user: TestUser,
    app: FastAPI,
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "hi")
    await wait_run(client, user, run_id)
    stored = await stored_events(app, run_id)
    # a browser's EventSource: the JWT in the URL
    assert await _read_all(http, f"{_stream_url(run_id)}?token={user.token}", {}) == stored
    # API keys never go in URLs, even valid ones
    created = await client.post("/api/api-keys", json={"name": "k"}, headers=user.headers)
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    in_url = await http.get(f"{_stream_url(run_id)}?token={secret}")
    assert in_url.status_code == 401
    assert in_url.json()["code"] == "unauthorized"
    assert await _read_all(http, _stream_url(run_id), {"X-API-Key": secret}) == stored
    # a bad token is refused, not treated as anonymous; no token at all: the run is private
    assert (await http.get(f"{_stream_url(run_id)}?token=not-a-jwt")).status_code == 401
    assert (await http.get(_stream_url(run_id))).status_code == 404
    # another user's token: not found, as if the run did not exist
    assert (await http.get(f"{_stream_url(run_id)}?token={other_user.token}")).status_code == 404


async def test_a_hundred_subscribers_get_the_same_full_sequence(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "slow 12 0.05")
    rng = random.Random(5)
    # they attach at different moments of the run: before, during and near its end
    results = await asyncio.gather(
        *(
            _read_all(http, _stream_url(run_id), user.headers, delay=rng.uniform(0, 0.5))
            for _ in range(100)
        )
    )
    stored = await stored_events(app, run_id)
    assert stored[-1]["data"]["status"] == "completed"
    for events in results:
        assert events == stored


async def test_subscribers_leaving_mid_run_do_not_affect_it(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "slow 20 0.03")

    async def leave_after(count: int) -> None:
        async with http.stream("GET", _stream_url(run_id), headers=user.headers) as response:
            await StreamReader(response).until(lambda e: e.data["seq"] >= count)

    await asyncio.gather(*(leave_after(n) for n in (1, 2, 4, 6, 9, 12)))
    run = await wait_run(client, user, run_id)
    assert run["status"] == "completed" and run["error"] is None
    stored = await stored_events(app, run_id)
    assert_gapless(stored)
    text = "".join(e["data"]["text"] for e in stored if e["type"] == "text_delta")
    assert len(text) == 20


async def test_the_asgi_stream_matches_the_live_one(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    """Live events and replayed rows are the same objects (created_at included)."""
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "slow 8 0.02")
    live = await _read_all(http, _stream_url(run_id), user.headers)
    replayed = _parse((await client.get(_stream_url(run_id), headers=user.headers)).text)
    assert live == replayed == await stored_events(app, run_id)


@pytest.mark.parametrize("settings_overrides", [{"event_retention_days": 1e-5}], ids=["1s"])
async def test_events_past_retention_are_gone(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "hi")
    await wait_run(client, user, run_id)
    await asyncio.sleep(1.0)  # retention is 0.864 s here
    response = await http.get(_stream_url(run_id), headers=user.headers)
    assert response.status_code == 410
    assert response.json()["code"] == "events_expired"
