"""Account suspension: a suspended account cannot create, run or use API keys (403
`forbidden`), its members can still read; suspending stops its active runs; lifting it restores
everything."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.accounts import admin as account_admin
from shoal.db.session import unit_of_work
from shoal.llm.base import ChatModel
from shoal.llm.scripted import ScriptedChatModel
from shoal.llm.types import ChatRequest, Chunk, TextDelta
from shoal.runs import admin as run_admin
from tests.conftest import TestUser, make_user


class StallingModel(ScriptedChatModel):
    """Streams one chunk, then hangs until cancelled (a run that stays `running`)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        yield TextDelta("thinking")
        self.started.set()
        await asyncio.sleep(3600)


@pytest.fixture
def chat_model() -> ChatModel:
    return StallingModel()


async def _suspend(app: FastAPI, account_id: uuid.UUID, reason: str | None = "abuse") -> Any:
    async with unit_of_work(app.state.session_factory) as session:
        return await run_admin.suspend_account(
            session, app.state.runtime, str(account_id), reason=reason
        )


async def _unsuspend(app: FastAPI, account_id: uuid.UUID) -> None:
    async with unit_of_work(app.state.session_factory) as session:
        await account_admin.unsuspend(session, account_id)


async def _api_key(client: httpx.AsyncClient, user: TestUser) -> str:
    response = await client.post("/api/api-keys", json={"name": "k"}, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


async def _thread(client: httpx.AsyncClient, user: TestUser) -> str:
    response = await client.post("/api/threads", json={"name": "t"}, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["thread_id"])


def _assert_suspended(response: httpx.Response, reason: str | None = "abuse") -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["code"] == "forbidden"
    assert "suspended" in body["detail"]
    if reason:
        assert reason in body["detail"]


async def _wait_status(
    client: httpx.AsyncClient, user: TestUser, run_id: str, status: str
) -> dict[str, Any]:
    for _ in range(1500):
        run = (await client.get(f"/api/agent-run/{run_id}", headers=user.headers)).json()
        if run["status"] == status:
            return dict(run)
        await asyncio.sleep(0.02)
    raise AssertionError(f"run never reached {status}: {run}")


async def test_suspended_account_cannot_create_run_or_use_keys_but_can_read(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser
) -> None:
    key = await _api_key(client, user)
    thread_id = await _thread(client, user)
    await _suspend(app, user.account_id)

    _assert_suspended(await client.post("/api/projects", json={"name": "p"}, headers=user.headers))
    _assert_suspended(await client.post("/api/threads", json={"name": "t"}, headers=user.headers))
    _assert_suspended(await client.post("/api/agents", json={"name": "a"}, headers=user.headers))
    _assert_suspended(await client.post("/api/api-keys", json={"name": "x"}, headers=user.headers))
    _assert_suspended(
        await client.post("/api/accounts", json={"name": "new"}, headers=user.headers)
    )
    _assert_suspended(
        await client.post(
            f"/api/threads/{thread_id}/agent/start", json={"prompt": "hi"}, headers=user.headers
        )
    )
    _assert_suspended(
        await client.post("/api/agent/initiate", data={"prompt": "hi"}, headers=user.headers)
    )
    # The account's API keys do nothing, not even reads.
    _assert_suspended(await client.get("/api/projects", headers={"X-API-Key": key}))
    _assert_suspended(await client.get("/api/projects", headers={"Authorization": f"Bearer {key}"}))

    # Signed-in members still read (to see what happened and export their data).
    threads = await client.get("/api/threads", headers=user.headers)
    assert threads.status_code == 200
    assert [t["thread_id"] for t in threads.json()["threads"]] == [thread_id]
    accounts = (await client.get("/api/accounts", headers=user.headers)).json()["accounts"]
    assert accounts[0]["suspended_at"] is not None

    await _unsuspend(app, user.account_id)
    created = await client.post("/api/projects", json={"name": "p"}, headers=user.headers)
    assert created.status_code == 201, created.text
    assert (await client.get("/api/projects", headers={"X-API-Key": key})).status_code == 200
    accounts = (await client.get("/api/accounts", headers=user.headers)).json()["accounts"]
    assert accounts[0]["suspended_at"] is None


async def test_suspension_is_per_account(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser
) -> None:
    team = await client.post("/api/accounts", json={"name": "team"}, headers=user.headers)
    team_id = team.json()["account_id"]
    await _suspend(app, uuid.UUID(team_id), reason=None)
    as_team = {**user.headers, "X-Account-Id": team_id}
    _assert_suspended(await client.post("/api/projects", json={"name": "p"}, headers=as_team), None)
    assert (await client.get("/api/projects", headers=as_team)).status_code == 200
    # The user's personal account is not suspended.
    personal = await client.post("/api/projects", json={"name": "p"}, headers=user.headers)
    assert personal.status_code == 201, personal.text
    other = await make_user(app)
    assert (
        await client.post("/api/projects", json={"name": "p"}, headers=other.headers)
    ).status_code == 201


async def test_suspend_stops_running_and_queued_runs(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, chat_model: StallingModel
) -> None:
    thread_id = await _thread(client, user)
    start = await client.post(
        f"/api/threads/{thread_id}/agent/start", json={"prompt": "go"}, headers=user.headers
    )
    running = start.json()["agent_run_id"]
    await asyncio.wait_for(chat_model.started.wait(), 30)
    second = await client.post(
        f"/api/threads/{thread_id}/agent/start",
        json={"prompt": "next", "multitask_strategy": "enqueue"},
        headers=user.headers,
    )
    queued = second.json()["agent_run_id"]
    assert (await client.get(f"/api/agent-run/{queued}", headers=user.headers)).json()[
        "status"
    ] == "queued"
    other = await make_user(app)
    bystander_thread = await _thread(client, other)
    bystander = await client.post(
        f"/api/threads/{bystander_thread}/agent/start", json={"prompt": "x"}, headers=other.headers
    )
    bystander_id = bystander.json()["agent_run_id"]
    await _wait_status(client, other, bystander_id, "running")

    result = await _suspend(app, user.account_id)
    assert result.newly_suspended
    assert {str(r) for r in result.stopped_run_ids} == {running, queued}
    for run_id in (running, queued):
        run = await _wait_status(client, user, run_id, "stopped")
        assert run["stop_requested_at"] is not None
    # Another account's run is untouched.
    assert (await client.get(f"/api/agent-run/{bystander_id}", headers=other.headers)).json()[
        "status"
    ] == "running"

    again = await _suspend(app, user.account_id, reason="still abuse")
    assert not again.newly_suspended and again.stopped_run_ids == []
    _assert_suspended(
        await client.post("/api/projects", json={"name": "p"}, headers=user.headers), "still abuse"
    )


async def test_suspend_and_unsuspend_explain_unknown_accounts(app: FastAPI) -> None:
    from shoal.errors import BadRequest, NotFound

    with pytest.raises(NotFound, match="No account"):
        await _suspend(app, uuid.uuid4())
    async with unit_of_work(app.state.session_factory) as session:
        with pytest.raises(NotFound, match="not an account id"):
            await account_admin.unsuspend(session, "nope")
        with pytest.raises(BadRequest, match="longer than"):
            await account_admin.suspend(session, uuid.uuid4(), reason="x" * 501)
