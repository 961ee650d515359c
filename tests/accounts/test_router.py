"""Accounts, members and API keys over HTTP (both backends)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TestUser, make_user


async def _team(client: httpx.AsyncClient, owner: TestUser, name: str = "Team") -> dict[str, Any]:
    response = await client.post("/api/accounts", json={"name": name}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _add(
    client: httpx.AsyncClient, owner: TestUser, account_id: str, who: TestUser, role: str = "member"
) -> httpx.Response:
    return await client.post(
        f"/api/accounts/{account_id}/members",
        json={"user_id": str(who.id), "role": role},
        headers=owner.headers,
    )


async def _key(
    client: httpx.AsyncClient, who: TestUser, account_id: str | None = None, name: str = "ci"
) -> httpx.Response:
    headers = {**who.headers, **({"X-Account-Id": account_id} if account_id else {})}
    return await client.post("/api/api-keys", json={"name": name}, headers=headers)


# -- accounts --------------------------------------------------------------------------------


async def test_personal_account_is_listed_with_owner_role(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    response = await client.get("/api/accounts", headers=user.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    [account] = body["accounts"]
    assert account["account_id"] == str(user.id)
    assert (account["personal"], account["role"]) == (True, "owner")
    assert set(account) >= {"account_id", "name", "personal", "role", "created_at", "updated_at"}


async def test_create_team_account(client: httpx.AsyncClient, user: TestUser) -> None:
    team = await _team(client, user, "  Research  ")
    assert (team["name"], team["personal"], team["role"]) == ("Research", False, "owner")
    got = await client.get(f"/api/accounts/{team['account_id']}", headers=user.headers)
    assert got.status_code == 200 and got.json() == team
    listed = (await client.get("/api/accounts", headers=user.headers)).json()["accounts"]
    assert [a["account_id"] for a in listed] == [team["account_id"], str(user.id)]  # newest first
    assert (
        await client.post("/api/accounts", json={"name": ""}, headers=user.headers)
    ).status_code == 422


async def test_accounts_paginate(client: httpx.AsyncClient, user: TestUser) -> None:
    created = [(await _team(client, user, f"T{i}"))["account_id"] for i in range(3)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/accounts", params=params, headers=user.headers)).json()
        assert len(page["accounts"]) <= 2
        seen += [a["account_id"] for a in page["accounts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [*reversed(created), str(user.id)]
    bad = await client.get("/api/accounts", params={"cursor": "garbage!"}, headers=user.headers)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    assert (
        await client.get("/api/accounts", params={"limit": 0}, headers=user.headers)
    ).status_code == 422
    assert (
        await client.get("/api/accounts", params={"limit": 201}, headers=user.headers)
    ).status_code == 422


async def test_accounts_need_auth(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/accounts")
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


# -- team membership -------------------------------------------------------------------------


async def test_member_reads_outsider_gets_404(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, other_user: TestUser
) -> None:
    team = await _team(client, user)
    account_id = team["account_id"]
    outsider = await make_user(app)
    added = await _add(client, user, account_id, other_user)
    assert added.status_code == 201
    assert added.json() == {
        "user_id": str(other_user.id),
        "email": other_user.email,
        "role": "member",
        "created_at": added.json()["created_at"],
    }
    # The member sees the account, with their role, and its members.
    got = await client.get(f"/api/accounts/{account_id}", headers=other_user.headers)
    assert got.status_code == 200 and got.json()["role"] == "member"
    listed = (await client.get("/api/accounts", headers=other_user.headers)).json()["accounts"]
    assert account_id in [a["account_id"] for a in listed]
    members = await client.get(f"/api/accounts/{account_id}/members", headers=other_user.headers)
    assert members.status_code == 200
    assert {(m["email"], m["role"]) for m in members.json()["members"]} == {
        (user.email, "owner"),
        (other_user.email, "member"),
    }
    # An outsider learns nothing.
    for path in (f"/api/accounts/{account_id}", f"/api/accounts/{account_id}/members"):
        response = await client.get(path, headers=outsider.headers)
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert (await _add(client, outsider, account_id, outsider)).status_code == 404
    assert (await client.get("/api/accounts/not-a-uuid", headers=user.headers)).status_code == 404


async def test_member_cannot_manage_members(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, other_user: TestUser
) -> None:
    account_id = (await _team(client, user))["account_id"]
    third = await make_user(app)
    assert (await _add(client, user, account_id, other_user)).status_code == 201
    assert (await _add(client, user, account_id, third)).status_code == 201
    refused = await _add(client, other_user, account_id, await make_user(app))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    promote = await _add(client, other_user, account_id, other_user, role="owner")
    assert promote.status_code == 403
    kick = await client.delete(
        f"/api/accounts/{account_id}/members/{third.id}", headers=other_user.headers
    )
    assert kick.status_code == 403
    # ...but a member may leave.
    leave = await client.delete(
        f"/api/accounts/{account_id}/members/{other_user.id}", headers=other_user.headers
    )
    assert leave.status_code == 204
    assert (
        await client.get(f"/api/accounts/{account_id}", headers=other_user.headers)
    ).status_code == 404


async def test_owner_changes_roles_and_removes(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    account_id = (await _team(client, user))["account_id"]
    assert (await _add(client, user, account_id, other_user)).status_code == 201
    promoted = await _add(client, user, account_id, other_user, role="owner")
    assert promoted.status_code == 200 and promoted.json()["role"] == "owner"
    # Now the promoted owner can add and remove.
    demote = await _add(client, other_user, account_id, user, role="member")
    assert demote.status_code == 200
    assert (await client.get(f"/api/accounts/{account_id}", headers=user.headers)).json()[
        "role"
    ] == "member"
    removed = await client.delete(
        f"/api/accounts/{account_id}/members/{user.id}", headers=other_user.headers
    )
    assert removed.status_code == 204
    again = await client.delete(
        f"/api/accounts/{account_id}/members/{user.id}", headers=other_user.headers
    )
    assert again.status_code == 404


async def test_last_owner_stays(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    account_id = (await _team(client, user))["account_id"]
    assert (await _add(client, user, account_id, other_user)).status_code == 201
    leave = await client.delete(
        f"/api/accounts/{account_id}/members/{user.id}", headers=user.headers
    )
    assert leave.status_code == 409 and leave.json()["code"] == "conflict"
    demote = await _add(client, user, account_id, user, role="member")
    assert demote.status_code == 409
    assert (await client.get(f"/api/accounts/{account_id}", headers=user.headers)).json()[
        "role"
    ] == "owner"


async def test_personal_account_owner_cannot_be_removed(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    personal = str(user.id)
    response = await client.delete(
        f"/api/accounts/{personal}/members/{user.id}", headers=user.headers
    )
    assert response.status_code == 409
    assert (await _add(client, user, personal, other_user)).status_code == 409


async def test_add_unknown_user_is_404(client: httpx.AsyncClient, user: TestUser) -> None:
    account_id = (await _team(client, user))["account_id"]
    response = await client.post(
        f"/api/accounts/{account_id}/members",
        json={"user_id": str(uuid.uuid4()), "role": "member"},
        headers=user.headers,
    )
    assert response.status_code == 404
    bad_role = await client.post(
        f"/api/accounts/{account_id}/members",
        json={"user_id": str(user.id), "role": "admin"},
        headers=user.headers,
    )
    assert bad_role.status_code == 422


async def test_x_account_id_of_a_foreign_account_is_404(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    team = (await _team(client, user))["account_id"]
    for header in (team, str(user.id), "nope"):
        response = await client.get(
            "/api/api-keys", headers={**other_user.headers, "X-Account-Id": header}
        )
        assert response.status_code == 404, header


# -- API keys --------------------------------------------------------------------------------


async def test_api_key_lifecycle(client: httpx.AsyncClient, user: TestUser) -> None:
    created = await _key(client, user, name="deploy bot")
    assert created.status_code == 201, created.text
    key = created.json()
    secret = key["secret"]
    assert secret.startswith("shoal_sk_") and secret.startswith(key["prefix"])
    assert (key["name"], key["last_used_at"]) == ("deploy bot", None)

    listed = (await client.get("/api/api-keys", headers=user.headers)).json()
    assert listed["next_cursor"] is None
    [row] = listed["api_keys"]
    assert row == {k: v for k, v in key.items() if k != "secret"}
    assert secret not in str(listed)

    # Usable as a bearer token and as X-API-Key; it acts for its account.
    for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
        response = await client.get("/api/accounts", headers=headers)
        assert response.status_code == 200
        assert [a["account_id"] for a in response.json()["accounts"]] == [str(user.id)]
    used = (await client.get("/api/api-keys", headers=user.headers)).json()["api_keys"][0]
    assert used["last_used_at"] is not None

    deleted = await client.delete(f"/api/api-keys/{key['key_id']}", headers=user.headers)
    assert deleted.status_code == 204
    assert (
        await client.delete(f"/api/api-keys/{key['key_id']}", headers=user.headers)
    ).status_code == 404
    for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
        response = await client.get("/api/accounts", headers=headers)
        assert response.status_code == 401 and response.json()["code"] == "unauthorized"
    assert (await client.get("/api/api-keys", headers=user.headers)).json()["api_keys"] == []


async def test_api_key_cannot_manage_api_keys(client: httpx.AsyncClient, user: TestUser) -> None:
    key = (await _key(client, user)).json()
    as_key = {"Authorization": f"Bearer {key['secret']}"}
    assert (
        await client.post("/api/api-keys", json={"name": "x"}, headers=as_key)
    ).status_code == 403
    assert (await client.get("/api/api-keys", headers=as_key)).status_code == 403
    assert (
        await client.delete(f"/api/api-keys/{key['key_id']}", headers=as_key)
    ).status_code == 403
    assert (
        await client.post("/api/accounts", json={"name": "x"}, headers=as_key)
    ).status_code == 403


async def test_team_api_keys_are_for_owners(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    team = (await _team(client, user))["account_id"]
    assert (await _add(client, user, team, other_user)).status_code == 201
    created = await _key(client, user, team)
    assert created.status_code == 201
    key = created.json()
    # A member may not list, create or delete them.
    member_headers = {**other_user.headers, "X-Account-Id": team}
    assert (await client.get("/api/api-keys", headers=member_headers)).status_code == 403
    assert (await _key(client, other_user, team)).status_code == 403
    assert (
        await client.delete(f"/api/api-keys/{key['key_id']}", headers=other_user.headers)
    ).status_code == 403
    # The key acts for the team only: listing accounts shows just the team.
    as_key = {"X-API-Key": key["secret"]}
    accounts = (await client.get("/api/accounts", headers=as_key)).json()["accounts"]
    assert [a["account_id"] for a in accounts] == [team]
    foreign = await client.get(f"/api/accounts/{user.id}", headers=as_key)
    assert foreign.status_code == 404
    # Personal keys are not the team's keys.
    assert (await client.get("/api/api-keys", headers=user.headers)).json()["api_keys"] == []
    team_keys = await client.get("/api/api-keys", headers={**user.headers, "X-Account-Id": team})
    assert [k["key_id"] for k in team_keys.json()["api_keys"]] == [key["key_id"]]


async def test_removed_members_keys_stop_working(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    team = (await _team(client, user))["account_id"]
    assert (await _add(client, user, team, other_user, role="owner")).status_code == 201
    key = (await _key(client, other_user, team)).json()
    assert (
        await client.get("/api/accounts", headers={"X-API-Key": key["secret"]})
    ).status_code == 200
    removed = await client.delete(
        f"/api/accounts/{team}/members/{other_user.id}", headers=user.headers
    )
    assert removed.status_code == 204
    assert (
        await client.get("/api/accounts", headers={"X-API-Key": key["secret"]})
    ).status_code == 401


@pytest.mark.parametrize("value", ["shoal_sk_unknown", "Basic abc"])
async def test_bad_credentials_are_401(client: httpx.AsyncClient, value: str) -> None:
    headers = {"Authorization": value if " " in value else f"Bearer {value}"}
    response = await client.get("/api/accounts", headers=headers)
    assert response.status_code == 401
