"""Stop really stops: within 2 s, keeping the partial answer; queued runs never reach the LLM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from shoal.llm.base import ChatModel
from shoal.llm.scripted import ScriptedChatModel
from shoal.llm.types import ChatRequest, Chunk, TextDelta
from tests.conftest import TestUser
from tests.runs.test_lifecycle import _thread, _wait_finished


class StallingModel(ScriptedChatModel):
    """Streams one chunk, then stalls for a minute (a provider that hangs)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.cancelled = asyncio.Event()

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        self.requests.append(request)
        yield TextDelta("partial answer")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.fixture
def chat_model() -> ChatModel:
    return StallingModel()


async def _wait_status(client: httpx.AsyncClient, user: TestUser, run_id: str, status: str) -> None:
    for _ in range(1000):
        run = (await client.get(f"/api/agent-run/{run_id}", headers=user.headers)).json()
        if run["status"] == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"run never reached {status}: {run}")


async def _wait_stalled(model: StallingModel) -> None:
    """Until the model has streamed its first chunk and stalls."""
    for _ in range(500):
        if model.calls:
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the model was never called")


async def test_stop_while_model_stalls_keeps_partial_text(
    client: httpx.AsyncClient, user: TestUser, chat_model: StallingModel
) -> None:
    thread_id = await _thread(client, user)
    start = await client.post(
        f"/api/threads/{thread_id}/agent/start", json={"prompt": "go"}, headers=user.headers
    )
    run_id = start.json()["agent_run_id"]
    await _wait_stalled(chat_model)
    began = time.monotonic()
    stop = await client.post(f"/api/agent-run/{run_id}/stop", headers=user.headers)
    assert stop.status_code == 202
    assert stop.json()["status"] == "running" and stop.json()["stop_requested_at"]
    run = await _wait_finished(client, user, run_id)
    elapsed = time.monotonic() - began
    assert run["status"] == "stopped", run
    # The 2 s promise is measured by `make bench` (stop latency); a test on a noisy machine
    # only proves the stop does not wait for the 60 s stall.
    assert elapsed < 15.0, f"stop took {elapsed:.2f}s"
    assert chat_model.cancelled.is_set()  # the provider stream was cancelled
    messages = (await client.get(f"/api/threads/{thread_id}/messages", headers=user.headers)).json()
    assistant = [m for m in messages["messages"] if m["type"] == "assistant"]
    assert assistant and assistant[-1]["content"]["content"] == "partial answer"
    assert assistant[-1]["metadata"]["interrupted"] is True
    # idempotent: stopping again changes nothing
    again = await client.post(f"/api/agent-run/{run_id}/stop", headers=user.headers)
    assert again.status_code == 200 and again.json()["status"] == "stopped"


async def test_stop_of_queued_run_never_calls_the_model(
    client: httpx.AsyncClient, user: TestUser, chat_model: StallingModel
) -> None:
    thread_id = await _thread(client, user)
    first = await client.post(
        f"/api/threads/{thread_id}/agent/start", json={"prompt": "one"}, headers=user.headers
    )
    await _wait_stalled(chat_model)
    second = await client.post(
        f"/api/threads/{thread_id}/agent/start",
        json={"prompt": "two", "multitask_strategy": "enqueue"},
        headers=user.headers,
    )
    second_id = second.json()["agent_run_id"]
    assert (await client.get(f"/api/agent-run/{second_id}", headers=user.headers)).json()[
        "status"
    ] == "queued"
    stop = await client.post(f"/api/agent-run/{second_id}/stop", headers=user.headers)
    assert stop.status_code == 202 and stop.json()["status"] == "stopped"
    await client.post(f"/api/agent-run/{first.json()['agent_run_id']}/stop", headers=user.headers)
    await _wait_finished(client, user, first.json()["agent_run_id"])
    await asyncio.sleep(0.3)
    assert chat_model.calls == 1
    prompts = [m.get("content") for r in chat_model.requests for m in r.messages]
    assert "two" not in prompts


async def test_interrupt_reject_and_enqueue(
    client: httpx.AsyncClient, user: TestUser, chat_model: StallingModel
) -> None:
    thread_id = await _thread(client, user)
    first = (
        await client.post(
            f"/api/threads/{thread_id}/agent/start", json={"prompt": "1"}, headers=user.headers
        )
    ).json()["agent_run_id"]
    await _wait_stalled(chat_model)
    # another thread of the same project shares the project's one active run
    project_id = (await client.get(f"/api/threads/{thread_id}", headers=user.headers)).json()[
        "project_id"
    ]
    other = (
        await client.post(
            "/api/threads", json={"project_id": project_id, "name": "b"}, headers=user.headers
        )
    ).json()["thread_id"]
    rejected = await client.post(
        f"/api/threads/{other}/agent/start",
        json={"prompt": "2", "multitask_strategy": "reject"},
        headers=user.headers,
    )
    assert rejected.status_code == 409
    assert rejected.json()["code"] == "run_active"
    assert rejected.json()["active_run_id"] == first
    interrupting = await client.post(
        f"/api/threads/{other}/agent/start", json={"prompt": "3"}, headers=user.headers
    )
    assert interrupting.status_code == 202
    new_id = interrupting.json()["agent_run_id"]
    old = await _wait_finished(client, user, first)
    assert old["status"] == "stopped"
    await _wait_status(client, user, new_id, "running")
    await client.post(f"/api/agent-run/{new_id}/stop", headers=user.headers)
    await _wait_finished(client, user, new_id)
