"""The worker's heartbeat: one fenced statement renews every run it holds and reads every stop
flag, so a stop whose signal was lost, and a run taken away from this attempt, are both seen
without a transaction per run."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from shoal.db.models import AgentRun, RunEvent
from shoal.db.session import unit_of_work
from tests.conftest import TestUser
from tests.runs.conftest import PromptModel, get_run, new_thread, start_run, wait_run

FAST_BEAT = {"run_heartbeat_seconds": 0.3, "sweeper_interval_seconds": 3600.0}


async def _stalled_runs(
    client: httpx.AsyncClient, user: TestUser, model: PromptModel, count: int
) -> list[str]:
    runs = []
    for _ in range(count):  # one project each: they run side by side
        thread_id, _ = await new_thread(client, user)
        model.stalled.clear()
        runs.append(await start_run(client, user, thread_id, "stall"))
        await model.wait_stalled()
    return runs


@pytest.mark.parametrize("settings_overrides", [FAST_BEAT], ids=["fast-beat"])
async def test_a_stop_flag_without_its_signal_stops_only_that_run(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, chat_model: PromptModel
) -> None:
    flagged, other = await _stalled_runs(client, user, chat_model, 2)
    # The flag as a stop sets it, but no signal: only the heartbeat can see it.
    async with unit_of_work(app.state.session_factory) as session:
        await session.execute(
            update(AgentRun)
            .where(AgentRun.id == uuid.UUID(flagged))
            .values(stop_requested_at=func.now())
        )
    assert (await wait_run(client, user, flagged, timeout=10.0))["status"] == "stopped"
    await asyncio.sleep(1.0)  # a few more beats: the other run's lease keeps being renewed
    assert (await get_run(client, user, other))["status"] == "running"
    await client.post(f"/api/agent-run/{other}/stop", headers=user.headers)
    assert (await wait_run(client, user, other, timeout=10.0))["status"] == "stopped"


@pytest.mark.parametrize("settings_overrides", [FAST_BEAT], ids=["fast-beat"])
async def test_a_run_taken_from_its_attempt_is_let_go_without_a_write(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, chat_model: PromptModel
) -> None:
    taken, kept = await _stalled_runs(client, user, chat_model, 2)
    factory = app.state.session_factory
    async with unit_of_work(factory) as session:  # as the sweeper would end a lapsed run
        await session.execute(
            update(AgentRun).where(AgentRun.id == uuid.UUID(taken)).values(status="failed")
        )
        stored = await session.scalar(
            select(func.count()).where(RunEvent.run_id == uuid.UUID(taken))
        )
    await asyncio.wait_for(chat_model.cancelled.wait(), 5.0)  # the engine was cancelled
    await asyncio.sleep(0.5)
    async with unit_of_work(factory) as session:
        after = await session.scalar(
            select(func.count()).where(RunEvent.run_id == uuid.UUID(taken))
        )
    assert after == stored  # the fenced-out attempt wrote nothing (no terminal event of its own)
    assert (await get_run(client, user, taken))["status"] == "failed"
    assert (await get_run(client, user, kept))["status"] == "running"
    await client.post(f"/api/agent-run/{kept}/stop", headers=user.headers)
    assert (await wait_run(client, user, kept, timeout=10.0))["status"] == "stopped"
