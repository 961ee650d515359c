"""The per-account cap on active runs: over it → 429 ``concurrency_limit`` with Retry-After."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import TestUser, make_user
from tests.runs.conftest import new_thread, start_run, wait_run


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_active_runs_per_account": 1}


async def test_second_active_run_of_an_account_is_refused(
    client: httpx.AsyncClient, user: TestUser, app: Any
) -> None:
    first_thread, _ = await new_thread(client, user)
    second_thread, _ = await new_thread(client, user)  # another project: no per-project clash
    first = await start_run(client, user, first_thread, "stall")
    await wait_run(client, user, first, ("running",))

    keyed = {**user.headers, "Idempotency-Key": "retry-me"}
    refused = await client.post(
        f"/api/threads/{second_thread}/agent/start", json={"prompt": "hi"}, headers=keyed
    )
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "concurrency_limit"
    assert int(refused.headers["Retry-After"]) >= 1
    runs = await client.get(f"/api/threads/{second_thread}/agent-runs", headers=user.headers)
    assert runs.json()["agent_runs"] == []  # nothing was stored for the refused start
    messages = await client.get(f"/api/threads/{second_thread}/messages", headers=user.headers)
    assert messages.json()["messages"] == []

    # initiate counts against the same cap
    initiated = await client.post(
        "/api/agent/initiate", files={"prompt": (None, "x")}, headers=user.headers
    )
    assert initiated.status_code == 429
    assert initiated.json()["code"] == "concurrency_limit"

    # another account is not affected
    someone = await make_user(app)
    theirs, _ = await new_thread(client, someone)
    await start_run(client, someone, theirs, "hi")

    # once the first run ends, the account may start again
    await client.post(f"/api/agent-run/{first}/stop", headers=user.headers)
    await wait_run(client, user, first)
    # a refused request is not remembered: retrying it with its key now starts the run
    again = await client.post(
        f"/api/threads/{second_thread}/agent/start", json={"prompt": "hi"}, headers=keyed
    )
    assert again.status_code == 202, again.text
    run = await wait_run(client, user, again.json()["agent_run_id"])
    assert run["status"] == "completed"


async def test_interrupting_the_projects_own_run_is_not_over_the_cap(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    """With a cap of 1, a new message in the same project replaces the active run (the
    default ``interrupt``): the run being stopped does not count against the cap."""
    thread_id, _ = await new_thread(client, user)
    first = await start_run(client, user, thread_id, "stall")
    await wait_run(client, user, first, ("running",))
    second = await start_run(client, user, thread_id, "hi")
    assert (await wait_run(client, user, first))["status"] == "stopped"
    assert (await wait_run(client, user, second))["status"] == "completed"
