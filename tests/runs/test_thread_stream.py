"""The thread stream: every run of a thread in order, then new runs live; resumable by id."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.runs.events import RunEventLog, RunMessageStore
from shoal.runs.runtime import run_stream
from shoal.streaming.sse import SSEEvent
from tests.conftest import TestUser
from tests.runs.conftest import (
    PromptModel,
    StreamReader,
    is_terminal,
    new_thread,
    start_run,
    stored_events,
    wait_run,
)


def _url(thread_id: str) -> str:
    return f"/api/threads/{thread_id}/stream"


def _of_run(run_id: str) -> Any:
    return lambda e: is_terminal(e) and e.data["run_id"] == run_id


def _data(events: list[SSEEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events]


async def test_replays_every_run_then_stays_open_for_new_ones(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    thread_id, _ = await new_thread(client, user)
    first = await start_run(client, user, thread_id, "one")
    await wait_run(client, user, first)
    second = await start_run(client, user, thread_id, "two")
    await wait_run(client, user, second)

    async with http.stream("GET", _url(thread_id), headers=user.headers) as response:
        assert response.status_code == 200
        reader = StreamReader(response)
        history = await reader.until(_of_run(second))
        assert _data(history) == await stored_events(app, first) + await stored_events(app, second)
        # ids are opaque strings, unique, and not the per-run seq
        ids = [e.id for e in history]
        assert all(isinstance(i, str) and i for i in ids)
        assert len(set(ids)) == len(ids)
        assert {e.event for e in history} >= {"run_status", "message", "text_delta"}

        # still open: a run started now arrives on the same connection
        third = await start_run(client, user, thread_id, "slow 6 0.02")
        live = await reader.until(_of_run(third))
    assert _data(live) == await stored_events(app, third)
    assert len({e.id for e in history + live}) == len(history) + len(live)


async def test_resume_with_last_event_id(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    thread_id, _ = await new_thread(client, user)
    runs = [await start_run(client, user, thread_id, p) for p in ("a",)]
    await wait_run(client, user, runs[0])
    runs.append(await start_run(client, user, thread_id, "b"))
    await wait_run(client, user, runs[1])
    async with http.stream("GET", _url(thread_id), headers=user.headers) as response:
        full = await StreamReader(response).until(_of_run(runs[1]))
    for cut in (0, 3, len(full) - 5, len(full) - 1):
        headers = {**user.headers, "Last-Event-ID": str(full[cut].id)}
        async with http.stream("GET", _url(thread_id), headers=headers) as response:
            reader = StreamReader(response)
            rest = await reader.until(_of_run(runs[1])) if cut < len(full) - 1 else []
        assert _data(rest) == _data(full[cut + 1 :])
    bad = await http.get(_url(thread_id), headers={**user.headers, "Last-Event-ID": "nope"})
    assert bad.status_code == 400


async def test_after_now_starts_at_the_live_tail(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    thread_id, _ = await new_thread(client, user)
    old = await start_run(client, user, thread_id, "old")
    await wait_run(client, user, old)
    async with http.stream("GET", f"{_url(thread_id)}?after=now", headers=user.headers) as response:
        assert response.status_code == 200
        reader = StreamReader(response)
        new = await start_run(client, user, thread_id, "new")
        events = await reader.until(_of_run(new))
    assert {e.data["run_id"] for e in events} == {new}
    assert _data(events) == await stored_events(app, new)


async def test_stream_cursor_continues_right_after_the_history(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    user: TestUser,
    app: FastAPI,
    chat_model: PromptModel,
) -> None:
    """A client loads the messages while a run is live, then attaches at ``stream_cursor``: it
    sees what came after that history — no message twice, nothing missing."""
    thread_id, _ = await new_thread(client, user)
    done = await start_run(client, user, thread_id, "first")
    await wait_run(client, user, done)
    live = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()

    page = (await client.get(f"/api/threads/{thread_id}/messages", headers=user.headers)).json()
    history_ids = {m["message_id"] for m in page["messages"]}
    assert [m["type"] for m in page["messages"]] == ["user", "assistant", "user"]
    cursor = page["stream_cursor"]
    assert isinstance(cursor, str) and cursor

    headers = {**user.headers, "Last-Event-ID": cursor}
    async with http.stream("GET", _url(thread_id), headers=headers) as response:
        reader = StreamReader(response)
        head = await reader.until(lambda e: e.data["type"] == "text_delta")
        await client.post(f"/api/agent-run/{live}/stop", headers=user.headers)
        tail = await reader.until(_of_run(live))
    received = _data(head + tail)
    stored = await stored_events(app, live)
    last_history_seq = max(
        e["seq"]
        for e in stored
        if e["type"] == "message" and e["data"]["message"]["message_id"] in history_ids
    )
    assert received == stored[last_history_seq:]
    repeated = [
        e
        for e in received
        if e["type"] == "message" and e["data"]["message"]["message_id"] in history_ids
    ]
    assert repeated == []
    assert received[-1]["data"]["status"] == "stopped"


async def test_query_token_and_privacy_on_the_thread_stream(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "hi")
    await wait_run(client, user, run_id)
    async with http.stream("GET", f"{_url(thread_id)}?token={user.token}") as response:
        assert response.status_code == 200
        events = await StreamReader(response).until(_of_run(run_id))
    assert events[0].data["type"] == "run_status"
    assert (await http.get(_url(thread_id), headers=other_user.headers)).status_code == 404
    assert (await http.get(f"{_url(thread_id)}?token={other_user.token}")).status_code == 404
    assert (await http.get(_url(thread_id))).status_code == 404


async def test_subscribers_hanging_up_mid_replay_leave_the_database_usable(
    client: httpx.AsyncClient, http: httpx.AsyncClient, user: TestUser
) -> None:
    """A disconnect can land while the stream is reading the database; that read must not
    leave a connection (on SQLite: the database lock) behind for everyone else."""
    thread_id, _ = await new_thread(client, user)
    runs = []
    for prompt in ("a", "b", "c"):
        runs.append(await start_run(client, user, thread_id, prompt))
        await wait_run(client, user, runs[-1])
    async with http.stream("GET", _url(thread_id), headers=user.headers) as response:
        total = len(await StreamReader(response).until(_of_run(runs[-1])))
    for cut in [*range(1, total), *range(1, total)]:
        async with http.stream("GET", _url(thread_id), headers=user.headers) as response:
            reader = StreamReader(response)
            for _ in range(cut):
                assert await reader.next(timeout=20.0) is not None
    # everyone else still gets answers at once
    for _ in range(3):
        response = await asyncio.wait_for(
            client.post("/api/threads", json={"name": "after"}, headers=user.headers), 3.0
        )
        assert response.status_code == 201, response.text


async def test_after_now_skips_what_a_live_run_published_before_the_connect(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    user: TestUser,
    app: FastAPI,
    chat_model: PromptModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A live run's newest events may be published but not stored yet (the writer flushes in
    batches, up to 250 ms apart). ``?after=now`` must start after them, while a stream from
    the start (or a cursor before them) still gets them exactly once."""
    monkeypatch.setattr(RunEventLog, "_flush_soon", lambda self: None)  # the tail stays unstored
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()
    tail = await stored_events(app, run_id)
    buffered = await app.state.runtime.bus.buffered(run_stream(run_id), after=tail[-1]["seq"])
    assert [e["type"] for e in buffered] == ["text_delta"]  # published live, not yet stored
    before = buffered[-1]["seq"]

    now = await http.send(
        http.build_request("GET", f"{_url(thread_id)}?after=now", headers=user.headers),
        stream=True,
    )
    start = await http.send(
        http.build_request("GET", _url(thread_id), headers=user.headers), stream=True
    )
    try:
        now_reader, start_reader = StreamReader(now), StreamReader(start)
        head = await start_reader.until(lambda e: e.data["type"] == "text_delta")
        stop = await client.post(f"/api/agent-run/{run_id}/stop", headers=user.headers)
        assert stop.status_code == 202
        after_now = await now_reader.until(_of_run(run_id))
        from_start = head + await start_reader.until(_of_run(run_id))
    finally:
        await now.aclose()
        await start.aclose()
    assert [e.data["seq"] for e in after_now if e.data["seq"] <= before] == []
    assert after_now[-1].data["data"]["status"] == "stopped"
    stored = await stored_events(app, run_id)
    assert _data(after_now) == stored[before:]
    assert _data(from_start) == stored  # the unflushed delta too, once


async def test_stream_cursor_taken_right_after_a_message_is_stored(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    user: TestUser,
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The history is read the moment the worker has stored the assistant message: the
    ``stream_cursor`` of that history must already include the message, so the stream resumed
    with it does not deliver the message a second time."""
    stored_one = asyncio.Event()
    release = asyncio.Event()
    original = RunMessageStore.add_message

    async def pausing(self: RunMessageStore, *args: Any, **kwargs: Any) -> dict[str, Any]:
        message = await original(self, *args, **kwargs)
        if kwargs.get("type") == "assistant" and not stored_one.is_set():
            stored_one.set()
            await release.wait()
        return message

    monkeypatch.setattr(RunMessageStore, "add_message", pausing)
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "hello")
    await asyncio.wait_for(stored_one.wait(), 30)

    page = (await client.get(f"/api/threads/{thread_id}/messages", headers=user.headers)).json()
    assert [m["type"] for m in page["messages"]] == ["user", "assistant"]
    history_ids = {m["message_id"] for m in page["messages"]}
    headers = {**user.headers, "Last-Event-ID": page["stream_cursor"]}
    async with http.stream("GET", _url(thread_id), headers=headers) as response:
        reader = StreamReader(response)
        release.set()
        received = _data(await reader.until(_of_run(run_id)))
    repeated = [
        e["data"]["message"]["type"]
        for e in received
        if e["type"] == "message" and e["data"]["message"]["message_id"] in history_ids
    ]
    assert repeated == []
    stored = await stored_events(app, run_id)
    assert received == stored[len(stored) - len(received) :]
    assert received[-1]["data"]["status"] == "completed"
