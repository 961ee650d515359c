"""The worker: woken at once (never polled), and quiet when its run's project is deleted."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI

from tests.conftest import TestUser
from tests.runs.conftest import PromptModel, get_run, new_thread, start_run, wait_run

# The sweeper and the requeue never fire during these tests: only wake-ups can start runs.
NO_POLLING = {"sweeper_interval_seconds": 3600.0, "requeue_seconds": 3600.0}


@pytest.mark.parametrize("settings_overrides", [NO_POLLING], ids=["no-polling"])
async def test_a_run_starts_at_once(client: httpx.AsyncClient, user: TestUser) -> None:
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "hi")
    run = await wait_run(client, user, run_id, timeout=20.0)  # the sweeper would take an hour
    assert run["status"] == "completed"


@pytest.mark.parametrize("settings_overrides", [NO_POLLING], ids=["no-polling"])
async def test_a_queued_run_starts_when_the_one_before_it_ends(
    client: httpx.AsyncClient, user: TestUser, chat_model: PromptModel
) -> None:
    thread_id, _ = await new_thread(client, user)
    first = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()
    second = await start_run(client, user, thread_id, "hi", multitask_strategy="enqueue")
    assert (await get_run(client, user, second))["status"] == "queued"
    await asyncio.sleep(0.3)
    assert (await get_run(client, user, second))["status"] == "queued"  # the project is busy
    await client.post(f"/api/agent-run/{first}/stop", headers=user.headers)
    assert (await wait_run(client, user, first, timeout=20.0))["status"] == "stopped"
    # the terminal write of the first woke the second
    assert (await wait_run(client, user, second, timeout=20.0))["status"] == "completed"


@pytest.mark.parametrize("settings_overrides", [NO_POLLING], ids=["no-polling"])
async def test_a_wake_up_during_the_previous_ones_failed_claim_is_not_lost(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's wake-up job may find it not claimable yet (its project's run is just ending)
    while that ending already sent the next wake-up: the second one arrives while the first
    job still holds the run's key. It must make the job claim again, not be dropped — else
    the run waits for the sweeper (here: an hour)."""
    from shoal.runs.worker import RunWorker
    from tests.runs.test_sweeper import _queued_run_without_wakeup

    worker: RunWorker = app.state.run_host.worker
    original = RunWorker._claim_patiently
    attempts = 0
    first_attempt, go_on = asyncio.Event(), asyncio.Event()

    async def claim(self: RunWorker, run_id: Any) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:  # the first job: "not claimable yet", decided slowly
            first_attempt.set()
            await go_on.wait()
            return None
        return await original(self, run_id)

    monkeypatch.setattr(RunWorker, "_claim_patiently", claim)
    thread_id, project_id = await new_thread(client, user)
    run_id = await _queued_run_without_wakeup(app, user, thread_id, project_id)
    await worker.wake(str(run_id))
    await asyncio.wait_for(first_attempt.wait(), 10)
    await worker.wake(str(run_id))  # the ending run's wake-up, while the first job runs
    go_on.set()
    run = await wait_run(client, user, str(run_id), timeout=20.0)
    assert (run["status"], attempts) == ("completed", 2)


@pytest.mark.parametrize("settings_overrides", [NO_POLLING], ids=["no-polling"])
async def test_many_runs_start_at_once(client: httpx.AsyncClient, user: TestUser) -> None:
    threads = [(await new_thread(client, user))[0] for _ in range(6)]
    runs = await asyncio.gather(*(start_run(client, user, t, "hi") for t in threads))
    finished = await asyncio.gather(*(wait_run(client, user, r, timeout=20.0) for r in runs))
    assert [r["status"] for r in finished] == ["completed"] * 6


ERRORS = {"run_crashed", "job_crashed", "event_flush_failed", "heartbeat_failed", "sweep_failed"}


def _problems(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        entry
        for entry in logs
        if entry.get("event") in ERRORS or entry.get("log_level") in ("error", "critical")
    ]


@pytest.mark.parametrize("what", ["project", "thread"])
async def test_deleting_during_a_run_stops_it_quietly(
    client: httpx.AsyncClient,
    user: TestUser,
    app: FastAPI,
    chat_model: PromptModel,
    what: str,
) -> None:
    thread_id, project_id = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "stall")
    with structlog.testing.capture_logs() as logs:
        await chat_model.wait_stalled()
        await asyncio.sleep(0.3)  # the first delta is flushed; the run is mid-answer
        path = f"/api/projects/{project_id}" if what == "project" else f"/api/threads/{thread_id}"
        deleted = await client.delete(path, headers=user.headers)
        assert deleted.status_code == 204, deleted.text
        assert (await client.get(path, headers=user.headers)).status_code == 404
        gone = await client.get(f"/api/agent-run/{run_id}", headers=user.headers)
        assert gone.status_code == 404
        # the worker lets go of the run: the model call is cancelled and its job ends
        await asyncio.wait_for(chat_model.cancelled.wait(), 3.0)
        executor = app.state.run_host.worker.executor
        for _ in range(100):
            if executor.active == 0:
                break
            await asyncio.sleep(0.02)
        assert executor.active == 0
        await asyncio.sleep(0.3)
    assert _problems(logs) == []
    # the account is not left with a phantom active run
    other, _ = await new_thread(client, user)
    assert (await wait_run(client, user, await start_run(client, user, other, "hi")))[
        "status"
    ] == "completed"


@pytest.mark.parametrize("settings_overrides", [{"worker_max_runs": 1}], ids=["one-slot"])
async def test_a_full_worker_queues_runs_without_blocking_the_api(
    client: httpx.AsyncClient, user: TestUser, chat_model: PromptModel
) -> None:
    busy, _ = await new_thread(client, user)
    other, _ = await new_thread(client, user)
    first = await start_run(client, user, busy, "stall")
    await chat_model.wait_stalled()
    # accepted though no slot is free (the first run would hold it forever)
    second = await asyncio.wait_for(start_run(client, user, other, "hi"), 5.0)
    await asyncio.sleep(0.3)
    assert (await get_run(client, user, second))["status"] == "queued"
    await client.post(f"/api/agent-run/{first}/stop", headers=user.headers)
    assert (await wait_run(client, user, second, timeout=20.0))["status"] == "completed"


@pytest.mark.parametrize("settings_overrides", [{"worker_max_runs": 1}], ids=["one-slot"])
async def test_a_full_worker_runs_a_projects_queue_in_turn(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    """The finishing run wakes the next one while it still holds the only slot."""
    thread_id, _ = await new_thread(client, user)
    first = await start_run(client, user, thread_id, "slow 3 0.05")
    second = await start_run(client, user, thread_id, "hi", multitask_strategy="enqueue")
    assert (await wait_run(client, user, first, timeout=20.0))["status"] == "completed"
    assert (await wait_run(client, user, second, timeout=20.0))["status"] == "completed"


async def test_a_second_stop_does_not_interrupt_the_engine_s_cleanup(app: FastAPI) -> None:
    """A stop arrives twice (control channel and heartbeat): the second must not cancel the
    engine again while it stores the partial answer and its estimated usage."""
    import contextlib
    import uuid

    worker = app.state.run_host.worker
    cleaned = asyncio.Event()

    async def engine() -> Any:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # the cleanup: database writes in the real engine
            cleaned.set()
            raise

    run_id = uuid.uuid4()
    task = worker._start_engine(run_id, engine())
    await asyncio.sleep(0.01)
    worker._cancel(run_id, "stop")
    await asyncio.sleep(0.05)
    worker._cancel(run_id, "stop")  # the heartbeat's copy of the same stop
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert cleaned.is_set()
    worker._engines.pop(run_id, None)
    worker._reasons.pop(run_id, None)


async def test_a_stop_before_the_engine_exists_is_applied_when_it_starts(app: FastAPI) -> None:
    import contextlib
    import uuid

    worker = app.state.run_host.worker
    run_id = uuid.uuid4()
    worker._cancel(run_id, "stop")  # no engine yet: remembered

    async def engine() -> Any:
        await asyncio.sleep(60)

    task = worker._start_engine(run_id, engine())
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert task.cancelled()
    worker._engines.pop(run_id, None)
    worker._reasons.pop(run_id, None)
