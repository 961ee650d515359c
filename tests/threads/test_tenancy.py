"""Who may read and write projects, threads and messages (DESIGN.md §4, Tenancy)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.accounts.repository import AccountRepository
from shoal.auth.secrets import hash_secret, new_api_key
from shoal.db.models import ApiKey
from shoal.db.session import unit_of_work
from tests.conftest import TestUser, make_user
from tests.threads.conftest import Api


async def _team(app: FastAPI, owner: TestUser, *members: TestUser) -> uuid.UUID:
    async with unit_of_work(app.state.session_factory) as session:
        repo = AccountRepository(session)
        account = await repo.create_account(name="Team", owner_id=owner.id)
        for member in members:
            await repo.upsert_member(account.account_id, member.id, "member")
        return account.account_id


async def _api_key(app: FastAPI, who: TestUser, account_id: uuid.UUID) -> dict[str, str]:
    secret = new_api_key()
    async with unit_of_work(app.state.session_factory) as session:
        session.add(
            ApiKey(
                account_id=account_id,
                created_by_user_id=who.id,
                name="test",
                prefix=secret[:12],
                secret_hash=hash_secret(secret),
            )
        )
    return {"Authorization": f"Bearer {secret}"}


async def _fixture_data(
    api: Api, owner: TestUser, *, public: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    project = await api.project(owner, name="Owned", is_public=public, description="orig")
    thread = await api.thread(
        owner, project_id=project["project_id"], name="Chat", metadata={"v": 1}
    )
    message = await api.message(owner, thread["thread_id"], "secret plans")
    # Adding a message moved the thread's updated_at: take the thread as it is now.
    current = await api.client.get(f"/api/threads/{thread['thread_id']}", headers=owner.headers)
    return project, dict(current.json()), message


def _write_calls(project: dict[str, Any], thread: dict[str, Any]) -> list[tuple[str, str, Any]]:
    pid, tid = project["project_id"], thread["thread_id"]
    return [
        ("PATCH", f"/api/projects/{pid}", {"name": "hijacked"}),
        ("PATCH", f"/api/projects/{pid}", {"is_public": False}),
        ("PATCH", f"/api/threads/{tid}", {"name": "hijacked"}),
        ("POST", f"/api/threads/{tid}/messages", {"content": "injected"}),
        ("POST", "/api/threads", {"project_id": pid, "name": "intruder"}),
        ("DELETE", f"/api/threads/{tid}", None),
        ("DELETE", f"/api/projects/{pid}", None),
    ]


async def _assert_unchanged(
    client: httpx.AsyncClient,
    owner: TestUser,
    project: dict[str, Any],
    thread: dict[str, Any],
    message: dict[str, Any],
) -> None:
    pid, tid = project["project_id"], thread["thread_id"]
    assert (await client.get(f"/api/projects/{pid}", headers=owner.headers)).json() == project
    assert (await client.get(f"/api/threads/{tid}", headers=owner.headers)).json() == thread
    history = (await client.get(f"/api/threads/{tid}/messages", headers=owner.headers)).json()
    assert history["messages"] == [message]
    threads = (
        await client.get("/api/threads", params={"project_id": pid}, headers=owner.headers)
    ).json()
    assert [t["thread_id"] for t in threads["threads"]] == [tid]


# -- private resources ---------------------------------------------------------------------------


async def test_another_user_gets_404_for_everything_private(
    client: httpx.AsyncClient, api: Api, user: TestUser, other_user: TestUser
) -> None:
    project, thread, message = await _fixture_data(api, user, public=False)
    pid, tid = project["project_id"], thread["thread_id"]
    reads = [
        f"/api/projects/{pid}",
        f"/api/threads/{tid}",
        f"/api/threads/{tid}/messages",
    ]
    for path in reads:
        response = await client.get(path, headers=other_user.headers)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
    listed = await client.get(
        "/api/threads", params={"project_id": pid}, headers=other_user.headers
    )
    assert listed.status_code == 404
    for method, path, body in _write_calls(project, thread):
        response = await client.request(method, path, json=body, headers=other_user.headers)
        assert response.status_code == 404, (method, path, response.text)
    await _assert_unchanged(client, user, project, thread, message)


async def test_anonymous_gets_404_for_private_resources(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    project, thread, message = await _fixture_data(api, user, public=False)
    for path in (
        f"/api/projects/{project['project_id']}",
        f"/api/threads/{thread['thread_id']}",
        f"/api/threads/{thread['thread_id']}/messages",
    ):
        assert (await client.get(path)).status_code == 404
    for method, path, body in _write_calls(project, thread):
        response = await client.request(method, path, json=body)
        # Creating needs an account to act for, so it asks for sign-in first.
        expected = 401 if path == "/api/threads" else 404
        assert response.status_code == expected, (method, path, response.text)
    await _assert_unchanged(client, user, project, thread, message)


async def test_lists_show_only_your_own_resources(
    client: httpx.AsyncClient, api: Api, user: TestUser, other_user: TestUser
) -> None:
    mine = await api.thread(user, name="mine")
    theirs = await api.thread(other_user, name="theirs")
    public = await api.project(other_user, name="public", is_public=True)
    await api.thread(other_user, project_id=public["project_id"])

    projects = (await client.get("/api/projects", headers=user.headers)).json()["projects"]
    assert [p["project_id"] for p in projects] == [mine["project_id"]]
    threads = (await client.get("/api/threads", headers=user.headers)).json()["threads"]
    assert [t["thread_id"] for t in threads] == [mine["thread_id"]]
    # A public project of someone else is readable, but never part of your lists.
    filtered = await client.get(
        "/api/threads", params={"project_id": public["project_id"]}, headers=user.headers
    )
    assert filtered.status_code == 200
    assert filtered.json()["threads"] == []
    other_threads = (await client.get("/api/threads", headers=other_user.headers)).json()["threads"]
    assert mine["thread_id"] not in {t["thread_id"] for t in other_threads}
    assert theirs["thread_id"] in {t["thread_id"] for t in other_threads}


async def test_lists_and_creates_need_sign_in(client: httpx.AsyncClient) -> None:
    for method, path, body in (
        ("GET", "/api/projects", None),
        ("POST", "/api/projects", {"name": "x"}),
        ("GET", "/api/threads", None),
        ("POST", "/api/threads", {}),
    ):
        response = await client.request(method, path, json=body)
        assert response.status_code == 401, path
        assert response.json()["code"] == "unauthorized"


async def test_invalid_token_is_401_even_on_public_reads(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    project = await api.project(user, is_public=True)
    response = await client.get(
        f"/api/projects/{project['project_id']}", headers={"Authorization": "Bearer not-a-token"}
    )
    assert response.status_code == 401


# -- accounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["not-a-uuid", "random"])
async def test_acting_for_an_account_you_are_not_in_is_404(
    client: httpx.AsyncClient,
    app: FastAPI,
    api: Api,
    user: TestUser,
    other_user: TestUser,
    header: str,
) -> None:
    team = await _team(app, other_user)
    foreign = {"not-a-uuid": "not-a-uuid", "random": str(team)}[header]
    headers = {**user.headers, "X-Account-Id": foreign}
    for method, path, body in (
        ("POST", "/api/projects", {"name": "x"}),
        ("GET", "/api/projects", None),
        ("POST", "/api/threads", {"name": "x"}),
        ("GET", "/api/threads", None),
    ):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "not_found"
    assert (await client.get("/api/projects", headers=user.headers)).json()["projects"] == []
    # The other user's personal account id is no better.
    other_personal = {**user.headers, "X-Account-Id": str(other_user.account_id)}
    assert (await client.get("/api/projects", headers=other_personal)).status_code == 404


async def test_team_resources_are_shared_by_members_only(
    client: httpx.AsyncClient, app: FastAPI, api: Api, user: TestUser, other_user: TestUser
) -> None:
    member = await make_user(app)
    team = await _team(app, user, member)
    as_team = {"X-Account-Id": str(team)}

    project = await api.project(user, headers=as_team, name="Team project")
    assert project["account_id"] == str(team)
    thread = await api.thread(user, headers=as_team, name="Team chat")
    assert thread["account_id"] == str(team)

    # Lists act for one account: the personal list does not mix in the team's.
    personal = (await client.get("/api/projects", headers=user.headers)).json()["projects"]
    assert personal == []
    team_list = (await client.get("/api/projects", headers={**user.headers, **as_team})).json()[
        "projects"
    ]
    assert {p["project_id"] for p in team_list} == {project["project_id"], thread["project_id"]}

    # Another member reads and writes it; the thread they add belongs to the team.
    assert (
        await client.get(f"/api/projects/{project['project_id']}", headers=member.headers)
    ).status_code == 200
    joined = await api.thread(member, project_id=project["project_id"], name="member's")
    assert joined["account_id"] == str(team)
    await api.message(member, thread["thread_id"], "hi from a member")
    member_threads = (
        await client.get("/api/threads", headers={**member.headers, "X-Account-Id": str(team)})
    ).json()["threads"]
    assert {t["thread_id"] for t in member_threads} == {thread["thread_id"], joined["thread_id"]}

    # A non-member sees nothing of it.
    assert (
        await client.get(f"/api/projects/{project['project_id']}", headers=other_user.headers)
    ).status_code == 404
    assert (
        await client.get(f"/api/threads/{thread['thread_id']}/messages", headers=other_user.headers)
    ).status_code == 404


async def test_an_api_key_is_confined_to_its_account(
    client: httpx.AsyncClient, app: FastAPI, api: Api, user: TestUser
) -> None:
    team = await _team(app, user)
    team_project = await api.project(user, headers={"X-Account-Id": str(team)}, name="team")
    personal_thread = await api.thread(user, name="personal")
    key = await _api_key(app, user, user.account_id)

    assert (
        await client.get(f"/api/threads/{personal_thread['thread_id']}", headers=key)
    ).status_code == 200
    assert (
        await client.get(f"/api/projects/{team_project['project_id']}", headers=key)
    ).status_code == 404
    created = await client.post(
        "/api/threads", json={"project_id": team_project["project_id"]}, headers=key
    )
    assert created.status_code == 404
    listed = (await client.get("/api/projects", headers=key)).json()["projects"]
    assert [p["project_id"] for p in listed] == [personal_thread["project_id"]]


# -- public projects -----------------------------------------------------------------------------


async def test_public_project_is_readable_by_anyone(
    client: httpx.AsyncClient, api: Api, user: TestUser, other_user: TestUser
) -> None:
    project, thread, message = await _fixture_data(api, user, public=True)
    for headers in ({}, other_user.headers):
        got = await client.get(f"/api/projects/{project['project_id']}", headers=headers)
        assert got.status_code == 200
        assert got.json() == project
        assert (
            await client.get(f"/api/threads/{thread['thread_id']}", headers=headers)
        ).json() == thread
        history = await client.get(f"/api/threads/{thread['thread_id']}/messages", headers=headers)
        assert history.status_code == 200
        assert history.json()["messages"] == [message]


async def test_public_project_refuses_writes_by_non_members(
    client: httpx.AsyncClient, api: Api, user: TestUser, other_user: TestUser
) -> None:
    project, thread, message = await _fixture_data(api, user, public=True)
    for method, path, body in _write_calls(project, thread):
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.json()["code"] == "unauthorized"
        outsider = await client.request(method, path, json=body, headers=other_user.headers)
        assert outsider.status_code == 403, (method, path, outsider.text)
        assert outsider.json()["code"] == "forbidden"
    await _assert_unchanged(client, user, project, thread, message)
    # The outsider's own lists stay empty: nothing was created on their behalf either.
    assert (await client.get("/api/projects", headers=other_user.headers)).json()["projects"] == []


async def test_making_a_project_private_hides_it_again(
    client: httpx.AsyncClient, api: Api, user: TestUser, other_user: TestUser
) -> None:
    project, thread, _ = await _fixture_data(api, user, public=True)
    assert (
        await client.get(f"/api/threads/{thread['thread_id']}", headers=other_user.headers)
    ).status_code == 200
    response = await client.patch(
        f"/api/projects/{project['project_id']}", json={"is_public": False}, headers=user.headers
    )
    assert response.status_code == 200
    assert (
        await client.get(f"/api/threads/{thread['thread_id']}", headers=other_user.headers)
    ).status_code == 404
    assert (await client.get(f"/api/projects/{project['project_id']}")).status_code == 404
