"""Metering inside real runs: every LLM call lands in the ledger as it happens, a run that
crosses the plan's limit stops with ``billing_limit``, and a stopped stream is still charged."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from shoal.db.models import UsageEntry
from shoal.llm.base import ChatModel
from shoal.llm.scripted import ScriptedChatModel
from shoal.llm.types import ChatRequest, Chunk, Finish, TextDelta, ToolCallDelta, Usage
from tests.conftest import TestUser
from tests.runs.test_lifecycle import _thread, _wait_finished

# The free plan allows $5 a month; each scripted call costs $3 (an independent price table:
# 1_000_000 prompt tokens at $2/M + 500_000 completion tokens at $2/M).
PRICE_PER_TOKEN_USD = 2 / 1_000_000
PROMPT, COMPLETION = 1_000_000, 500_000
CALL_COST = (PROMPT + COMPLETION) * PRICE_PER_TOKEN_USD


def _expensive_turn(request: ChatRequest) -> list[Chunk]:
    """Some text, a call to a tool that does not exist (the loop goes on), a costly usage."""
    return [
        TextDelta("thinking about it"),
        ToolCallDelta(
            index=0, id=f"call_{uuid.uuid4().hex[:8]}", name="no_such_tool", arguments="{}"
        ),
        Finish("tool_calls"),
        Usage(request.model, PROMPT, COMPLETION, CALL_COST),
    ]


class StallingModel(ScriptedChatModel):
    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        yield TextDelta("a partial answer that will be cut off")
        await asyncio.sleep(60)


@pytest.fixture
def settings_overrides(billing_on: dict[str, Any]) -> dict[str, Any]:
    return billing_on


async def _ledger(app: FastAPI, run_id: str) -> list[UsageEntry]:
    async with app.state.session_factory() as session:
        rows = await session.execute(
            select(UsageEntry).where(UsageEntry.run_id == uuid.UUID(run_id))
        )
        return list(rows.scalars().all())


class TestCrossingTheLimit:
    @pytest.fixture
    def chat_model(self) -> ChatModel:
        return ScriptedChatModel([_expensive_turn] * 5)

    async def test_run_crossing_its_limit_stops_with_billing_limit(
        self, app: FastAPI, client: httpx.AsyncClient, user: TestUser
    ) -> None:
        thread_id = await _thread(client, user)
        start = await client.post(
            f"/api/threads/{thread_id}/agent/start", json={"prompt": "go"}, headers=user.headers
        )
        assert start.status_code == 202, start.text
        run = await _wait_finished(client, user, start.json()["agent_run_id"])
        assert run["status"] == "failed"
        assert run["error"]["code"] == "billing_limit"
        rows = await _ledger(app, run["id"])
        # $3 + $3 crosses $5 after the second call; no third call is made.
        assert len(rows) == 2
        assert sum(r.cost_micro_usd for r in rows) == round(2 * CALL_COST * 1_000_000)
        assert all(r.prompt_tokens == PROMPT and r.completion_tokens == COMPLETION for r in rows)
        # the output so far is kept: both calls' answers, including the one that crossed it
        # (the run is cancelled after that transaction commits, not inside it)
        history = await client.get(f"/api/threads/{thread_id}/messages", headers=user.headers)
        assert [m["type"] for m in history.json()["messages"]].count("assistant") == 2
        # and the next start is refused before it runs
        again = await client.post(
            f"/api/threads/{thread_id}/agent/start", json={"prompt": "more"}, headers=user.headers
        )
        assert again.status_code == 402
        assert again.json()["code"] == "billing_limit"


class TestStoppedStream:
    @pytest.fixture
    def chat_model(self) -> ChatModel:
        return StallingModel()

    async def test_a_run_stopped_mid_stream_is_charged_an_estimate(
        self, app: FastAPI, client: httpx.AsyncClient, user: TestUser, chat_model: StallingModel
    ) -> None:
        thread_id = await _thread(client, user)
        start = await client.post(
            f"/api/threads/{thread_id}/agent/start", json={"prompt": "go"}, headers=user.headers
        )
        run_id = start.json()["agent_run_id"]
        for _ in range(500):
            if chat_model.requests:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        await client.post(f"/api/agent-run/{run_id}/stop", headers=user.headers)
        run = await _wait_finished(client, user, run_id)
        assert run["status"] == "stopped"
        rows = await _ledger(app, run_id)
        assert len(rows) == 1
        assert rows[0].estimated is True
        assert rows[0].prompt_tokens > 0 and rows[0].completion_tokens > 0
        assert run["usage"]["completion_tokens"] == rows[0].completion_tokens


async def test_model_not_allowed_is_402_with_the_allowed_models(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    thread_id = await _thread(client, user)
    response = await client.post(
        f"/api/threads/{thread_id}/agent/start",
        json={"prompt": "go", "model_name": "anthropic/claude-opus-4-20250514"},
        headers=user.headers,
    )
    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "model_not_allowed"
    assert "shoal/demo" in body["allowed_models"]
