"""Idempotency-Key on start and initiate: a retried request never starts a second run."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import TestUser, make_user
from tests.runs.conftest import new_thread, wait_run


def _key(user: TestUser, key: str) -> dict[str, str]:
    return {**user.headers, "Idempotency-Key": key}


async def _runs_of(client: httpx.AsyncClient, user: TestUser, thread_id: str) -> list[str]:
    response = await client.get(f"/api/threads/{thread_id}/agent-runs", headers=user.headers)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["agent_runs"]]


async def test_start_same_key_same_body_returns_the_same_run(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    thread_id, _ = await new_thread(client, user)
    url = f"/api/threads/{thread_id}/agent/start"
    body = {"prompt": "hello", "metadata": {"n": 1}}
    first = await client.post(url, json=body, headers=_key(user, "k-1"))
    assert first.status_code == 202, first.text
    run_id = first.json()["agent_run_id"]
    await wait_run(client, user, run_id)  # the retry comes after the run finished
    second = await client.post(url, json=body, headers=_key(user, "k-1"))
    assert second.status_code == 202
    assert second.json() == first.json()
    assert await _runs_of(client, user, thread_id) == [run_id]
    # the prompt was stored once
    messages = (await client.get(f"/api/threads/{thread_id}/messages", headers=user.headers)).json()
    assert [m["type"] for m in messages["messages"]].count("user") == 1


async def test_start_same_key_other_body_is_a_conflict(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    thread_id, _ = await new_thread(client, user)
    url = f"/api/threads/{thread_id}/agent/start"
    first = await client.post(url, json={"prompt": "one"}, headers=_key(user, "k-2"))
    assert first.status_code == 202
    other = await client.post(url, json={"prompt": "two"}, headers=_key(user, "k-2"))
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    # the same key on another thread is another body too
    other_thread, _ = await new_thread(client, user)
    elsewhere = await client.post(
        f"/api/threads/{other_thread}/agent/start",
        json={"prompt": "one"},
        headers=_key(user, "k-2"),
    )
    assert elsewhere.status_code == 409
    assert elsewhere.json()["code"] == "idempotency_conflict"
    assert await _runs_of(client, user, thread_id) == [first.json()["agent_run_id"]]
    assert await _runs_of(client, user, other_thread) == []


async def test_keys_are_per_account(client: httpx.AsyncClient, user: TestUser, app: Any) -> None:
    someone = await make_user(app)
    mine, _ = await new_thread(client, user)
    theirs, _ = await new_thread(client, someone)
    a = await client.post(
        f"/api/threads/{mine}/agent/start", json={"prompt": "x"}, headers=_key(user, "shared")
    )
    b = await client.post(
        f"/api/threads/{theirs}/agent/start", json={"prompt": "x"}, headers=_key(someone, "shared")
    )
    assert a.status_code == b.status_code == 202
    assert a.json()["agent_run_id"] != b.json()["agent_run_id"]


async def test_concurrent_retries_start_one_run(client: httpx.AsyncClient, user: TestUser) -> None:
    thread_id, _ = await new_thread(client, user)
    url = f"/api/threads/{thread_id}/agent/start"
    responses = await asyncio.gather(
        *(client.post(url, json={"prompt": "race"}, headers=_key(user, "k-race")) for _ in range(5))
    )
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {202, 409}, [r.text for r in responses]
    accepted = {r.json()["agent_run_id"] for r in responses if r.status_code == 202}
    assert len(accepted) == 1
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "idempotency_conflict"
    assert await _runs_of(client, user, thread_id) == list(accepted)


def _form(prompt: str, **fields: str) -> dict[str, tuple[None, str]]:
    """Multipart form fields (``files=`` makes httpx send multipart/form-data)."""
    return {"prompt": (None, prompt), **{k: (None, v) for k, v in fields.items()}}


async def _projects(client: httpx.AsyncClient, user: TestUser) -> list[str]:
    response = await client.get("/api/projects", headers=user.headers)
    assert response.status_code == 200, response.text
    return [p["project_id"] for p in response.json()["projects"]]


async def test_initiate_same_key_same_form_returns_the_same_run(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    first = await client.post(
        "/api/agent/initiate",
        files=_form("build it", metadata='{"a": 1}'),
        headers=_key(user, "i-1"),
    )
    assert first.status_code == 202, first.text
    body = first.json()
    assert set(body) >= {"agent_run_id", "project_id", "thread_id", "status"}
    second = await client.post(
        "/api/agent/initiate",
        files=_form("build it", metadata='{"a": 1}'),
        headers=_key(user, "i-1"),
    )
    assert second.status_code == 202
    assert second.json() == body
    assert await _projects(client, user) == [body["project_id"]]
    assert await _runs_of(client, user, body["thread_id"]) == [body["agent_run_id"]]

    conflict = await client.post(
        "/api/agent/initiate", files=_form("build something else"), headers=_key(user, "i-1")
    )
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency_conflict"
    assert await _projects(client, user) == [body["project_id"]]


async def test_a_key_is_remembered_per_route(client: httpx.AsyncClient, user: TestUser) -> None:
    """The same key on start and on initiate are two different requests, not a conflict."""
    thread_id, _ = await new_thread(client, user)
    started = await client.post(
        f"/api/threads/{thread_id}/agent/start", json={"prompt": "p"}, headers=_key(user, "same")
    )
    initiated = await client.post(
        "/api/agent/initiate", files=_form("p"), headers=_key(user, "same")
    )
    assert started.status_code == initiated.status_code == 202
    assert started.json()["agent_run_id"] != initiated.json()["agent_run_id"]
