"""``SHOAL_CONCURRENCY_OVERFLOW=queue``: over the account cap a run is accepted and waits
queued, and starts as soon as one of the account's runs ends."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import TestUser
from tests.runs.conftest import PromptModel, get_run, new_thread, start_run, wait_run


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_active_runs_per_account": 1, "concurrency_overflow": "queue"}


async def test_over_the_cap_a_run_waits_then_starts(
    client: httpx.AsyncClient, user: TestUser, chat_model: PromptModel
) -> None:
    first_thread, _ = await new_thread(client, user)
    second_thread, _ = await new_thread(client, user)  # another project
    first = await start_run(client, user, first_thread, "stall")
    await chat_model.wait_stalled(timeout=30)
    second = await start_run(client, user, second_thread, "hello")  # accepted, not 429
    await asyncio.sleep(1.0)
    assert (await get_run(client, user, second))["status"] == "queued"
    assert chat_model.calls == 1  # the second run has not reached the model

    stop = await client.post(f"/api/agent-run/{first}/stop", headers=user.headers)
    assert stop.status_code == 202
    done = await wait_run(client, user, second, ("completed",))
    assert done["status"] == "completed"
