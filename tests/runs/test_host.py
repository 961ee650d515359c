"""RunHost in embedded serve: readiness, recovery of a previous life's runs, drain on shutdown."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from shoal.config import Settings
from shoal.runs.host import RunHost
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


async def test_ready_reports_db_bus_broker_and_live_workers(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    components = body["components"]
    assert components["db"] == "ok"
    assert components["bus"] == "embedded"
    assert components["broker"] == "embedded"
    assert isinstance(components["workers_alive"], int) and components["workers_alive"] >= 1


async def test_a_restarted_server_fails_the_runs_its_last_life_left_running(
    client: httpx.AsyncClient,
    user: TestUser,
    app: FastAPI,
    settings: Settings,
    chat_model: PromptModel,
) -> None:
    """Embedded serve holds every run: at start-up, a run still ``running`` under another
    worker id died with the previous process — it fails at once, not after its lease."""
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()
    # A new life of the server on the same database (the lease would not lapse for an hour).
    later = settings.model_copy(update={"run_lease_seconds": 3600.0})
    host = RunHost.create(later, app.state.session_factory, execute=True, chat_model=PromptModel())
    await host.start()
    try:
        run = await wait_run(client, user, run_id, timeout=20.0)
    finally:
        await host.stop(drain_timeout=0)
    assert run["status"] == "failed"
    assert run["error"]["code"] == "worker_lost"
    events = await stored_events(app, uuid.UUID(run_id))
    assert_gapless(events)
    assert events[-1]["type"] == "run_status"
    assert events[-1]["data"]["error"]["code"] == "worker_lost"


async def test_drain_fails_unfinished_runs_as_worker_shutdown(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, chat_model: PromptModel
) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()
    await app.state.run_host.stop(drain_timeout=0.2)  # SIGTERM with a short drain
    run = await wait_run(client, user, run_id, timeout=20.0)
    assert run["status"] == "failed"
    assert run["error"]["code"] == "worker_shutdown"
    assert chat_model.cancelled.is_set()
    messages = (await client.get(f"/api/threads/{thread_id}/messages", headers=user.headers)).json()
    partial = [m for m in messages["messages"] if m["type"] == "assistant"]
    assert partial and partial[-1]["content"]["content"] == "partial"
    assert partial[-1]["metadata"].get("interrupted") is True
    assert await runs_by_status(app, "running", "queued") == []
