"""No run stays ``running`` or ``queued`` forever: lapsed leases, lost wake-ups, queue timeout."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from shoal.db.models import AgentRun
from shoal.db.session import unit_of_work
from shoal.kit.time import utcnow
from shoal.runs import lifecycle
from shoal.runs.repository import Fenced, NewEvent, RunRepository, event_dict
from shoal.runs.runtime import Runtime, run_stream
from tests.conftest import TestUser
from tests.runs.conftest import (
    PromptModel,
    assert_gapless,
    new_thread,
    runs_by_status,
    start_run,
    stored_events,
    wait_run,
)
from tests.runs.test_lifecycle import _parse


async def _queued_run_without_wakeup(
    app: FastAPI, user: TestUser, thread_id: str, project_id: str, *, woken_at: Any = None
) -> uuid.UUID:
    """A run row accepted like the API does (row + first event), but no wake-up sent."""
    runtime: Runtime = app.state.runtime
    async with unit_of_work(app.state.session_factory) as session:
        run = await RunRepository(session).add(
            AgentRun(
                thread_id=uuid.UUID(thread_id),
                project_id=uuid.UUID(project_id),
                account_id=user.account_id,
                model_name="scripted",
                options={},
                status="queued",
                last_wakeup_at=woken_at or utcnow(),
            )
        )
        await lifecycle.write_events(
            session, runtime, run, [("run_status", lifecycle.status_data(run))]
        )
        return run.id


async def test_lapsed_lease_fails_the_run_as_worker_lost(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, chat_model: PromptModel
) -> None:
    runtime: Runtime = app.state.runtime
    thread_id, project_id = await new_thread(client, user)
    run_id = await _queued_run_without_wakeup(app, user, thread_id, project_id)
    # A worker claims it, says "running", streams two deltas live, and dies before flushing
    # them or ever heartbeating.
    async with unit_of_work(app.state.session_factory) as session:
        claimed = await RunRepository(session).claim(run_id, worker_id="ghost", lease_seconds=0.5)
        assert claimed is not None and claimed.status == "running"
        attempt = claimed.attempt
        await lifecycle.write_events(
            session, runtime, claimed, [("run_status", lifecycle.status_data(claimed))]
        )
    for seq, text in ((3, "Hel"), (4, "lo")):
        event = NewEvent(seq, "text_delta", {"message_id": "m", "text": text}, utcnow())
        await runtime.bus.publish(
            run_stream(run_id), event_dict(None, event, run_id=run_id, thread_id=claimed.thread_id)
        )

    # A subscriber attached while the run is "running" sees it end.
    stream = asyncio.create_task(
        client.get(f"/api/agent-run/{run_id}/stream", headers=user.headers)
    )
    run = await wait_run(client, user, str(run_id), timeout=20.0)
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "worker_lost"
    assert run["completed_at"] is not None

    response = await asyncio.wait_for(stream, 5.0)
    assert response.status_code == 200
    events = _parse(response.text)
    assert_gapless(events)
    assert [e["type"] for e in events] == [
        "run_status",
        "run_status",
        "text_delta",
        "text_delta",
        "run_status",
    ]
    assert [e["data"].get("text") for e in events[2:4]] == ["Hel", "lo"]  # the unflushed tail
    assert events[-1]["data"]["status"] == "failed"
    assert events[-1]["data"]["error"]["code"] == "worker_lost"
    assert events == await stored_events(app, run_id)

    # The dead worker's attempt is fenced out of every later write.
    async with unit_of_work(app.state.session_factory) as session:
        with pytest.raises(Fenced):
            await RunRepository(session).fence(run_id, attempt, lease_seconds=30)
    # At most once: the run was not silently re-run by the live worker.
    assert chat_model.calls == 0
    assert await runs_by_status(app, "running", "queued") == []
    # The project is free again.
    again = await start_run(client, user, thread_id, "hi")
    assert (await wait_run(client, user, again))["status"] == "completed"


async def test_a_lost_wakeup_is_sent_again(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    """A queued run whose wake-up never arrived is woken by the sweeper after the requeue
    interval (here the default 30 s has long passed)."""
    thread_id, project_id = await new_thread(client, user)
    long_ago = utcnow().replace(year=2000)
    run_id = await _queued_run_without_wakeup(app, user, thread_id, project_id, woken_at=long_ago)
    run = await wait_run(client, user, str(run_id), timeout=20.0)
    assert run["status"] == "completed", run


@pytest.mark.parametrize("settings_overrides", [{"queue_timeout_seconds": 1.0}], ids=["timeout"])
async def test_a_run_queued_too_long_fails_with_queue_timeout(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, chat_model: PromptModel
) -> None:
    thread_id, _ = await new_thread(client, user)
    first = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()
    behind = await start_run(client, user, thread_id, "never", multitask_strategy="enqueue")
    assert (await client.get(f"/api/agent-run/{behind}", headers=user.headers)).json()[
        "status"
    ] == "queued"

    run = await wait_run(client, user, behind, timeout=20.0)
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "queue_timeout"
    assert run["started_at"] is None
    stream = await client.get(f"/api/agent-run/{behind}/stream", headers=user.headers)
    events = _parse(stream.text)
    assert_gapless(events)
    assert events[-1]["type"] == "run_status"
    assert events[-1]["data"]["status"] == "failed"
    assert events[-1]["data"]["error"]["code"] == "queue_timeout"
    # The run that was running is untouched; the timed-out one never reached the model.
    assert (await client.get(f"/api/agent-run/{first}", headers=user.headers)).json()[
        "status"
    ] == "running"
    assert chat_model.prompts == ["stall"]
    await client.post(f"/api/agent-run/{first}/stop", headers=user.headers)
    assert (await wait_run(client, user, first))["status"] == "stopped"
    assert await runs_by_status(app, "running", "queued") == []


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.services)])
async def test_marking_a_run_woken_never_waits_for_a_worker_claiming_it(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    """Ending a run marks the project's next queued run woken. A worker may be claiming that
    run at that moment — its claim holds the row and waits for the ending transaction (one
    running run per project) — so marking skips a locked row instead of waiting for it: on
    Postgres the two transactions would deadlock. (SQLite has one writer at a time.)"""
    thread_id, project_id = await new_thread(client, user)
    long_ago = utcnow() - timedelta(hours=1)
    run_id = await _queued_run_without_wakeup(app, user, thread_id, project_id, woken_at=long_ago)
    async with app.state.session_factory() as claimer:
        await claimer.execute(
            update(AgentRun).where(AgentRun.id == run_id).values(updated_at=utcnow())
        )  # holds the row, like a claim in progress
        async with unit_of_work(app.state.session_factory) as session:
            await asyncio.wait_for(RunRepository(session).mark_woken([run_id]), 10)
        await claimer.rollback()
    async with app.state.session_factory() as session:
        run = await RunRepository(session).get(run_id)
        assert run is not None and run.last_wakeup_at == long_ago  # skipped, not waited for
    async with unit_of_work(app.state.session_factory) as session:
        await RunRepository(session).mark_woken([run_id])
    async with app.state.session_factory() as session:
        run = await RunRepository(session).get(run_id)
        assert run is not None and run.last_wakeup_at > long_ago  # unlocked: marked
