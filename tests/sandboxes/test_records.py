"""The project's sandbox record over HTTP and who may see or manage it (DESIGN.md §4)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from shoal.db.models import Sandbox
from tests.conftest import TestUser
from tests.sandboxes.conftest import new_project, new_sandbox, sandbox_of, upload

PROMISED = {"sandbox_id", "project_id", "provider", "state", "created_at", "last_active_at"}


async def _rows(app: FastAPI, project_id: str) -> int:
    async with app.state.session_factory() as session:
        query = select(func.count()).where(Sandbox.project_id == uuid.UUID(project_id))
        return int((await session.execute(query)).scalar_one())


async def test_get_creates_a_stopped_record_once(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    project_id = await new_project(client, user)
    assert await _rows(app, project_id) == 0
    first = await sandbox_of(client, user, project_id)
    assert set(first) >= PROMISED
    assert set(first) - PROMISED <= {"error"}  # the only extra: why a sandbox is in `error`
    assert first["project_id"] == project_id
    assert first["state"] == "stopped"
    assert first["provider"] == "fake"
    uuid.UUID(first["sandbox_id"])
    for key in ("created_at", "last_active_at"):
        assert datetime.fromisoformat(first[key]).utcoffset() is not None
    again = await sandbox_of(client, user, project_id)
    assert again["sandbox_id"] == first["sandbox_id"]
    assert await _rows(app, project_id) == 1


async def test_concurrent_gets_make_one_record(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    project_id = await new_project(client, user)
    answers = await asyncio.gather(
        *(client.get(f"/api/projects/{project_id}/sandbox", headers=user.headers) for _ in range(4))
    )
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({a.json()["sandbox_id"] for a in answers}) == 1
    assert await _rows(app, project_id) == 1


async def test_ensure_active_starts_the_sandbox(client: httpx.AsyncClient, user: TestUser) -> None:
    project_id, sandbox_id = await new_sandbox(client, user)
    response = await client.post(
        f"/api/projects/{project_id}/sandbox/ensure-active", headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["sandbox_id"] == sandbox_id
    assert response.json()["state"] == "started"
    assert (await sandbox_of(client, user, project_id))["state"] == "started"
    # calling it again is harmless
    again = await client.post(
        f"/api/projects/{project_id}/sandbox/ensure-active", headers=user.headers
    )
    assert again.status_code == 200 and again.json()["state"] == "started"


async def test_ensure_active_on_a_fresh_project_creates_the_record(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    project_id = await new_project(client, user)
    response = await client.post(
        f"/api/projects/{project_id}/sandbox/ensure-active", headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "started"
    assert (await sandbox_of(client, user, project_id))["sandbox_id"] == response.json()[
        "sandbox_id"
    ]


async def test_public_project_sandbox_is_readable_by_anyone_but_managed_by_members(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    project_id, sandbox_id = await new_sandbox(client, user, public=True)
    assert (await upload(client, user, sandbox_id, "notes.txt", b"public notes")).status_code == 201
    for reader in ({}, other_user.headers):
        record = await client.get(f"/api/projects/{project_id}/sandbox", headers=reader)
        assert record.status_code == 200, record.text
        assert record.json()["sandbox_id"] == sandbox_id
        listing = await client.get(f"/api/sandboxes/{sandbox_id}/files", headers=reader)
        assert listing.status_code == 200
        assert [f["name"] for f in listing.json()["files"]] == ["notes.txt"]
        content = await client.get(
            f"/api/sandboxes/{sandbox_id}/files/content",
            params={"path": "notes.txt"},
            headers=reader,
        )
        assert content.status_code == 200 and content.content == b"public notes"

    for reader, status, code in (({}, 401, "unauthorized"), (other_user.headers, 403, "forbidden")):
        writes = [
            await client.post(
                f"/api/sandboxes/{sandbox_id}/files",
                data={"path": "evil.txt"},
                files={"file": ("evil.txt", b"x")},
                headers=reader,
            ),
            await client.delete(
                f"/api/sandboxes/{sandbox_id}/files", params={"path": "notes.txt"}, headers=reader
            ),
            await client.post(f"/api/projects/{project_id}/sandbox/ensure-active", headers=reader),
        ]
        for response in writes:
            assert response.status_code == status, response.text
            assert response.json()["code"] == code
    # nothing changed
    listing = await client.get(f"/api/sandboxes/{sandbox_id}/files", headers=user.headers)
    assert [f["name"] for f in listing.json()["files"]] == ["notes.txt"]
    assert (await sandbox_of(client, user, project_id))["state"] == "stopped"


async def test_another_accounts_private_sandbox_does_not_exist(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    project_id, sandbox_id = await new_sandbox(client, user)
    assert (await upload(client, user, sandbox_id, "secret.txt", b"s3cret")).status_code == 201
    base = f"/api/sandboxes/{sandbox_id}"
    for headers in ({}, other_user.headers):
        answers = [
            await client.get(f"/api/projects/{project_id}/sandbox", headers=headers),
            await client.post(f"/api/projects/{project_id}/sandbox/ensure-active", headers=headers),
            await client.get(f"{base}/files", headers=headers),
            await client.get(
                f"{base}/files/content", params={"path": "secret.txt"}, headers=headers
            ),
            await client.post(
                f"{base}/files",
                data={"path": "x.txt"},
                files={"file": ("x.txt", b"x")},
                headers=headers,
            ),
            await client.delete(f"{base}/files", params={"path": "secret.txt"}, headers=headers),
            await client.get(f"{base}/ports/8000/", headers=headers),
            await client.post(f"{base}/ports/8000/api", content=b"{}", headers=headers),
        ]
        for response in answers:
            assert response.status_code == 404, (response.request.url, response.text)
            assert response.json()["code"] == "not_found"
            assert "s3cret" not in response.text
    # the owner's file is untouched
    content = await client.get(
        f"{base}/files/content", params={"path": "secret.txt"}, headers=user.headers
    )
    assert content.content == b"s3cret"


async def test_malformed_and_unknown_ids_are_404(client: httpx.AsyncClient, user: TestUser) -> None:
    unknown = str(uuid.uuid4())
    for bad in ("not-a-uuid", "1", unknown, "%20"):
        answers = [
            await client.get(f"/api/projects/{bad}/sandbox", headers=user.headers),
            await client.post(f"/api/projects/{bad}/sandbox/ensure-active", headers=user.headers),
            await client.get(f"/api/sandboxes/{bad}/files", headers=user.headers),
            await client.get(
                f"/api/sandboxes/{bad}/files/content", params={"path": "a"}, headers=user.headers
            ),
            await client.delete(
                f"/api/sandboxes/{bad}/files", params={"path": "a"}, headers=user.headers
            ),
            await upload(client, user, bad, "a.txt", b"a"),
            await client.get(f"/api/sandboxes/{bad}/ports/8000/", headers=user.headers),
        ]
        for response in answers:
            assert response.status_code == 404, (bad, response.request.url, response.text)
            assert response.json()["code"] == "not_found"


async def test_a_sandbox_id_is_not_a_project_id(client: httpx.AsyncClient, user: TestUser) -> None:
    project_id, sandbox_id = await new_sandbox(client, user)
    assert (
        await client.get(f"/api/projects/{sandbox_id}/sandbox", headers=user.headers)
    ).status_code == 404
    assert (
        await client.get(f"/api/sandboxes/{project_id}/files", headers=user.headers)
    ).status_code == 404


async def test_the_record_follows_the_provider(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    """A sandbox stopped or lost behind shoal's back (restart, provider auto-stop or cleanup)
    shows as such, and ensure-active brings it back."""
    project_id, sandbox_id = await new_sandbox(client, user)
    url = f"/api/projects/{project_id}/sandbox/ensure-active"
    assert (await client.post(url, headers=user.headers)).json()["state"] == "started"
    provider = app.state.sandboxes.provider
    provider_id = await app.state.sandboxes.ensure_created(uuid.UUID(sandbox_id))
    await provider.stop(provider_id)
    assert (await sandbox_of(client, user, project_id))["state"] == "stopped"
    assert (await client.post(url, headers=user.headers)).json()["state"] == "started"
    await provider.delete(provider_id)
    assert (await sandbox_of(client, user, project_id))["state"] == "deleted"
    again = await client.post(url, headers=user.headers)
    assert again.status_code == 200 and again.json()["state"] == "started"
    assert again.json()["sandbox_id"] == sandbox_id
    assert (await provider.get(provider_id)).state == "started"
