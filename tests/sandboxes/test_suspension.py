"""A suspended account's sandboxes can be read, not started or written."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.accounts.test_suspension import _suspend
from tests.conftest import TestUser


async def test_suspended_account_cannot_start_or_write_its_sandbox(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    project = (await client.post("/api/projects", json={"name": "p"}, headers=user.headers)).json()
    sandbox = (
        await client.get(f"/api/projects/{project['project_id']}/sandbox", headers=user.headers)
    ).json()
    files = f"/api/sandboxes/{sandbox['sandbox_id']}/files"
    upload = {"data": {"path": "a.txt"}, "files": {"file": ("a.txt", b"a")}}
    assert (await client.post(files, headers=user.headers, **upload)).status_code == 201  # type: ignore[arg-type]

    await _suspend(app, user.account_id)

    refused = [
        await client.post(
            f"/api/projects/{project['project_id']}/sandbox/ensure-active", headers=user.headers
        ),
        await client.post(files, headers=user.headers, **upload),  # type: ignore[arg-type]
        await client.delete(files, params={"path": "a.txt"}, headers=user.headers),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert "suspended" in response.json()["detail"]
    listing = await client.get(files, headers=user.headers)
    assert listing.status_code == 200
    assert [f["name"] for f in listing.json()["files"]] == ["a.txt"]
