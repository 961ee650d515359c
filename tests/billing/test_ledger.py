"""The usage ledger: idempotent, priced right, and never deleted with what it metered."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from shoal.billing import service as billing
from shoal.billing.repository import BillingRepository
from shoal.db.models import UsageEntry
from shoal.db.session import unit_of_work
from shoal.llm.fake_server import FakeLLMServer, FakeTurn
from shoal.llm.litellm_adapter import LiteLLMChatModel
from shoal.llm.types import ChatRequest, Usage
from tests.billing.conftest import spend
from tests.conftest import TestUser

# The test's own price table (USD per million tokens), not shoal's nor LiteLLM's code path.
PRICES = {"gpt-4o-mini": (0.15, 0.60)}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"sandbox_usd_per_second": 0.0004}


async def _entries(app: FastAPI, run_id: uuid.UUID) -> list[UsageEntry]:
    async with unit_of_work(app.state.session_factory) as session:
        return list(await BillingRepository(session).entries_for_run(run_id))


async def _record(app: FastAPI, user: TestUser, run_id: uuid.UUID, usage: Usage, key: str) -> bool:
    async with unit_of_work(app.state.session_factory) as session:
        return await billing.record_llm_usage(
            session,
            account_id=user.account_id,
            project_id=None,
            thread_id=None,
            run_id=run_id,
            attempt=1,
            model=usage.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
            estimated=usage.estimated,
            key=key,
        )


async def test_a_repeated_key_is_recorded_once_even_concurrently(
    app: FastAPI, user: TestUser
) -> None:
    run_id = uuid.uuid4()
    usage = Usage(model="gpt-4o-mini", prompt_tokens=10, completion_tokens=5, cost_usd=0.25)
    first = await _record(app, user, run_id, usage, f"{run_id}:7")
    again = await asyncio.gather(
        *(_record(app, user, run_id, usage, f"{run_id}:7") for _ in range(5))
    )
    assert first is True and again == [False] * 5
    rows = await _entries(app, run_id)
    assert len(rows) == 1 and rows[0].cost_micro_usd == 250_000
    async with unit_of_work(app.state.session_factory) as session:
        spent = await billing.spend_this_period(
            session, user.account_id, settings=app.state.settings
        )
    assert spent == 250_000


@pytest.mark.parametrize("stopped", [False, True])
async def test_ledger_cost_is_tokens_times_an_independent_price_table(
    app: FastAPI, user: TestUser, stopped: bool
) -> None:
    """The fake provider reports tokens; LiteLLM prices them; the ledger must match our table.

    A stream stopped before its usage arrived is charged by LiteLLM's token count, marked
    estimated (what the engine records for a stopped run).
    """
    messages = [{"role": "user", "content": "hi"}]
    async with FakeLLMServer() as server:
        server.script(FakeTurn(text="hello there", usage=(12_345, 678)))
        model = LiteLLMChatModel(api_base=server.url + "/v1", api_key="sk-test", timeout=10)
        request = ChatRequest(model="openai/gpt-4o-mini", messages=messages)
        chunks = [chunk async for chunk in model.stream(request)]
    usage = next(c for c in chunks if isinstance(c, Usage))
    if stopped:
        usage = model.estimate_usage("openai/gpt-4o-mini", messages, "hello the" * 40)
    run_id = uuid.uuid4()
    assert await _record(app, user, run_id, usage, f"{run_id}:3")
    (row,) = await _entries(app, run_id)
    assert row.estimated is stopped
    if not stopped:
        assert (row.prompt_tokens, row.completion_tokens) == (12_345, 678)
    assert row.prompt_tokens > 0 and row.completion_tokens > 0
    per_in, per_out = PRICES["gpt-4o-mini"]
    expected_micro = round(row.prompt_tokens * per_in + row.completion_tokens * per_out)
    assert row.cost_micro_usd == expected_micro
    assert row.cost_micro_usd > 0


async def test_sandbox_exec_seconds_are_priced_by_the_setting(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser
) -> None:
    run_id = uuid.uuid4()
    async with unit_of_work(app.state.session_factory) as session:
        for seq, seconds in ((4, 2.5), (9, 0.5), (4, 2.5)):  # the repeat is a no-op
            await billing.record_exec_usage(
                session,
                settings=app.state.settings,
                account_id=user.account_id,
                project_id=None,
                thread_id=None,
                run_id=run_id,
                attempt=1,
                seconds=seconds,
                key=f"{run_id}:{seq}",
            )
    rows = await _entries(app, run_id)
    assert sorted(r.cost_micro_usd for r in rows) == [200, 1000]  # 0.0004 $/s
    report = (await client.get("/api/billing/usage?group_by=model", headers=user.headers)).json()
    (sandbox,) = report["rows"]
    assert sandbox["key"] == "sandbox"
    assert sandbox["exec_seconds"] == pytest.approx(3.0)
    assert report["total"]["cost_usd"] == pytest.approx(0.0012)


async def test_deleting_a_project_keeps_its_ledger_rows_and_usage(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser
) -> None:
    project = await client.post("/api/projects", json={"name": "metered"}, headers=user.headers)
    assert project.status_code == 201, project.text
    project_id = uuid.UUID(project.json()["project_id"])
    thread = await client.post(
        "/api/threads", json={"project_id": str(project_id)}, headers=user.headers
    )
    assert thread.status_code == 201, thread.text
    thread_id = uuid.UUID(thread.json()["thread_id"])
    for _ in range(2):
        await spend(
            app,
            user.account_id,
            cost_usd=0.5,
            prompt_tokens=300,
            completion_tokens=20,
            project_id=project_id,
            thread_id=thread_id,
        )

    deleted = await client.delete(f"/api/projects/{project_id}", headers=user.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"/api/threads/{thread_id}", headers=user.headers)).status_code == 404

    async with unit_of_work(app.state.session_factory) as session:
        count = await session.scalar(
            select(func.count()).where(UsageEntry.project_id == project_id)
        )
    assert count == 2
    report = (await client.get("/api/billing/usage?group_by=thread", headers=user.headers)).json()
    assert report["rows"] == [
        {
            "key": str(thread_id),
            "prompt_tokens": 600,
            "completion_tokens": 40,
            "cost_usd": 1.0,
            "exec_seconds": 0.0,
            "entries": 2,
        }
    ]
    assert report["total"]["cost_usd"] == 1.0
