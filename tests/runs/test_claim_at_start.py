"""Embedded starts claim their run in the start's own transaction (no wake-up → claim round
trip); a start that rolls back after that claim gives the worker's slot back, and a full
worker leaves new runs queued for a wake-up."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.db.session import unit_of_work
from shoal.runs.worker import RunWorker
from tests.conftest import TestUser
from tests.runs.conftest import (
    PromptModel,
    assert_gapless,
    get_run,
    new_thread,
    start_run,
    stored_events,
    wait_run,
)
from tests.runs.test_sweeper import _queued_run_without_wakeup

ONE_SLOT = {"worker_max_runs": 1, "sweeper_interval_seconds": 3600.0, "requeue_seconds": 3600.0}


class _Refused(Exception):
    pass


@pytest.mark.parametrize("settings_overrides", [ONE_SLOT], ids=["one-slot"])
async def test_a_start_rolled_back_after_its_claim_gives_the_slot_back(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    worker: RunWorker = app.state.run_host.worker
    thread_id, project_id = await new_thread(client, user)
    run_id = await _queued_run_without_wakeup(app, user, thread_id, project_id)
    with pytest.raises(_Refused):
        async with unit_of_work(app.state.session_factory) as session:
            assert await worker.claim_at_start(session, run_id)
            raise _Refused  # e.g. an Idempotency-Key conflict found after the claim
    assert (await get_run(client, user, str(run_id)))["status"] == "queued"  # undone
    # The only slot is free again: a new start is claimed and completes.
    other, _ = await new_thread(client, user)
    started = await start_run(client, user, other, "hi")
    assert (await wait_run(client, user, started, timeout=20.0))["status"] == "completed"


async def test_a_claimed_start_streams_queued_message_running_in_order(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "hi")
    assert (await wait_run(client, user, run_id, timeout=20.0))["status"] == "completed"
    events = await stored_events(app, run_id)
    assert_gapless(events)
    kinds = [(e["type"], e["data"].get("status")) for e in events[:3]]
    assert kinds == [("run_status", "queued"), ("message", None), ("run_status", "running")]


@pytest.mark.parametrize("settings_overrides", [ONE_SLOT], ids=["one-slot"])
async def test_a_full_worker_does_not_claim_at_start(
    client: httpx.AsyncClient, user: TestUser, chat_model: PromptModel
) -> None:
    busy, _ = await new_thread(client, user)
    first = await start_run(client, user, busy, "stall")
    await chat_model.wait_stalled()
    other, _ = await new_thread(client, user)
    second = await start_run(client, user, other, "hi")
    assert (await get_run(client, user, second))["status"] == "queued"
    await client.post(f"/api/agent-run/{first}/stop", headers=user.headers)
    assert (await wait_run(client, user, second, timeout=20.0))["status"] == "completed"


async def test_a_start_beside_a_run_storing_a_message_neither_deadlocks(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of the project is storing its answer (its transaction has renewed the run's
    lease and is about to take the thread's row) while a second start on the same thread
    tries to claim its run (which waits for that transaction: one running run per project).
    The start must not hold the thread's row while it waits — on Postgres the two would
    deadlock and one of them fail (a 500, or a lost answer)."""
    from shoal.threads.repository import MessageRepository

    original = MessageRepository.add
    paused, release = asyncio.Event(), asyncio.Event()

    async def pausing(self: MessageRepository, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("type") == "assistant" and not paused.is_set():
            paused.set()  # the worker's transaction is open and has fenced the run
            await release.wait()
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(MessageRepository, "add", pausing)
    thread_id, _ = await new_thread(client, user)
    first = await start_run(client, user, thread_id, "hi")
    await asyncio.wait_for(paused.wait(), 20)
    second = asyncio.create_task(
        client.post(
            f"/api/threads/{thread_id}/agent/start",
            json={"prompt": "next", "multitask_strategy": "enqueue"},
            headers=user.headers,
        )
    )
    await asyncio.sleep(0.5)  # the second start is inside its transaction by now
    release.set()
    response = await asyncio.wait_for(second, 30)
    assert response.status_code == 202, response.text
    assert (await wait_run(client, user, first, timeout=30.0))["status"] == "completed"
    later = response.json()["agent_run_id"]
    assert (await wait_run(client, user, later, timeout=30.0))["status"] == "completed"
