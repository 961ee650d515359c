"""Runs through the API on embedded defaults, with a scripted model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from shoal.llm.base import ChatModel
from shoal.llm.scripted import ScriptedChatModel, ScriptedTurn
from tests.conftest import TestUser


@pytest.fixture
def chat_model() -> ChatModel:
    return ScriptedChatModel([ScriptedTurn(text="Hello there, I am done.")])


async def _thread(client: httpx.AsyncClient, user: TestUser) -> str:
    response = await client.post("/api/threads", json={"name": "t"}, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["thread_id"])


async def _wait_finished(client: httpx.AsyncClient, user: TestUser, run_id: str) -> dict[str, Any]:
    for _ in range(600):  # generous: CI machines are noisy
        run = (await client.get(f"/api/agent-run/{run_id}", headers=user.headers)).json()
        if run["status"] in ("completed", "failed", "stopped"):
            return dict(run)
        await asyncio.sleep(0.05)
    raise AssertionError(f"run did not finish: {run}")


def _parse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            events.append(json.loads(data[0]))
    return events


async def test_start_completes_and_streams(client: httpx.AsyncClient, user: TestUser) -> None:
    thread_id = await _thread(client, user)
    response = await client.post(
        f"/api/threads/{thread_id}/agent/start", json={"prompt": "hi"}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    run_id = response.json()["agent_run_id"]
    run = await _wait_finished(client, user, run_id)
    assert run["status"] == "completed", run
    assert run["finish_reason"] == "stop"
    stream = await client.get(f"/api/agent-run/{run_id}/stream", headers=user.headers)
    assert stream.status_code == 200
    events = _parse(stream.text)
    print([(e["seq"], e["type"]) for e in events])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run_status" and events[0]["data"]["status"] == "queued"
    assert events[-1]["data"]["status"] == "completed"
    text = "".join(e["data"]["text"] for e in events if e["type"] == "text_delta")
    assert text == "Hello there, I am done."
    messages = (await client.get(f"/api/threads/{thread_id}/messages", headers=user.headers)).json()
    assert [m["type"] for m in messages["messages"]] == ["user", "assistant"]
    assert messages["stream_cursor"]
    # resume after event 3 gives exactly 4..end
    resumed = await client.get(
        f"/api/agent-run/{run_id}/stream", headers={**user.headers, "Last-Event-ID": "3"}
    )
    assert [e["seq"] for e in _parse(resumed.text)] == list(range(4, len(events) + 1))
    # at the end: 204
    end = await client.get(
        f"/api/agent-run/{run_id}/stream?after={len(events)}", headers=user.headers
    )
    assert end.status_code == 204
