"""/api/agents through the ASGI client, on SQLite and Postgres."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from shoal.agents import service as agent_service
from shoal.agents.schemas import BUILTIN_TOOLS
from shoal.agents.service import BUILTIN_AGENT
from shoal.db.session import unit_of_work
from shoal.errors import NotFound
from tests.conftest import TestUser


async def _create(client: httpx.AsyncClient, user: TestUser, **body: object) -> dict[str, object]:
    response = await client.post("/api/agents", json={"name": "a", **body}, headers=user.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_create_read_update_delete(client: httpx.AsyncClient, user: TestUser) -> None:
    created = await _create(
        client, user, name="Researcher", system_prompt="Be terse.", tools=["web_search", "complete"]
    )
    assert created["account_id"] == str(user.account_id)
    assert created["tools"] == ["web_search", "complete"]
    assert created["is_default"] is False
    assert set(created) >= {"agent_id", "description", "model_name", "created_at", "updated_at"}

    url = f"/api/agents/{created['agent_id']}"
    assert (await client.get(url, headers=user.headers)).json() == created

    patched = await client.patch(url, json={"model_name": "gpt-4o-mini"}, headers=user.headers)
    assert patched.status_code == 200
    assert patched.json()["model_name"] == "gpt-4o-mini"
    assert patched.json()["system_prompt"] == "Be terse."

    assert (await client.delete(url, headers=user.headers)).status_code == 204
    assert (await client.get(url, headers=user.headers)).status_code == 404
    assert (await client.delete(url, headers=user.headers)).status_code == 404


async def test_tools_default_to_all_builtins(client: httpx.AsyncClient, user: TestUser) -> None:
    created = await _create(client, user)
    assert created["tools"] == list(BUILTIN_TOOLS)


async def test_unknown_tool_is_a_readable_422(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.post(
        "/api/agents", json={"name": "x", "tools": ["rm_rf"]}, headers=user.headers
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert "rm_rf" in body["detail"]


async def test_one_default_per_account(client: httpx.AsyncClient, user: TestUser) -> None:
    first = await _create(client, user, name="one", is_default=True)
    second = await _create(client, user, name="two", is_default=True)
    listed = (await client.get("/api/agents", headers=user.headers)).json()["agents"]
    defaults = [a["agent_id"] for a in listed if a["is_default"]]
    assert defaults == [second["agent_id"]]
    await client.patch(
        f"/api/agents/{first['agent_id']}", json={"is_default": True}, headers=user.headers
    )
    listed = (await client.get("/api/agents", headers=user.headers)).json()["agents"]
    assert [a["agent_id"] for a in listed if a["is_default"]] == [first["agent_id"]]


async def test_pagination_newest_first(client: httpx.AsyncClient, user: TestUser) -> None:
    ids = [(await _create(client, user, name=f"a{i}"))["agent_id"] for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/agents", params=params, headers=user.headers)).json()
        seen += [a["agent_id"] for a in page["agents"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


async def test_other_tenant_gets_404(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    created = await _create(client, user)
    url = f"/api/agents/{created['agent_id']}"
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, object] = {"json": {"name": "stolen"}} if method == "PATCH" else {}
        response = await client.request(method, url, headers=other_user.headers, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 404, method
    assert (await client.get("/api/agents", headers=other_user.headers)).json()["agents"] == []
    assert (await client.get(url, headers=user.headers)).json()["name"] == "a"


async def test_resolve_prefers_requested_then_thread_then_default(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, other_user: TestUser
) -> None:
    default = await _create(client, user, name="default", is_default=True, model_name="m-default")
    named = await _create(client, user, name="named", system_prompt="named prompt")
    foreign = await _create(client, other_user, name="foreign")
    async with unit_of_work(app.state.session_factory) as session:
        account = user.account_id
        requested = await agent_service.resolve(
            session,
            account_id=account,
            requested_agent_id=uuid.UUID(str(named["agent_id"])),
            thread_agent_id=None,
        )
        assert requested.system_prompt == "named prompt"
        fallback = await agent_service.resolve(
            session, account_id=account, requested_agent_id=None, thread_agent_id=None
        )
        assert fallback.agent_id == uuid.UUID(str(default["agent_id"]))
        assert fallback.model_name == "m-default"
        with pytest.raises(NotFound):
            await agent_service.resolve(
                session,
                account_id=account,
                requested_agent_id=uuid.UUID(str(foreign["agent_id"])),
                thread_agent_id=None,
            )
    async with unit_of_work(app.state.session_factory) as session:
        builtin = await agent_service.resolve(
            session, account_id=other_user.account_id, requested_agent_id=None, thread_agent_id=None
        )
        assert builtin == BUILTIN_AGENT  # "foreign" is not a default: the built-in agent runs


async def test_malformed_id_and_anonymous(client: httpx.AsyncClient, user: TestUser) -> None:
    assert (await client.get("/api/agents/not-a-uuid", headers=user.headers)).status_code == 404
    response = await client.get("/api/agents")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
