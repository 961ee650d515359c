"""The files API and project deletion on the real local (bubblewrap) provider: files are real
files on disk, symlinks are made by real processes, and deleting a project removes them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from shoal.db.models import Sandbox
from shoal.llm.base import ChatModel
from shoal.llm.scripted import ScriptedChatModel
from shoal.sandbox import LocalProvider, SandboxProvider
from tests.conftest import TestUser
from tests.sandboxes.conftest import new_sandbox, sandbox_of, started, upload

pytestmark = pytest.mark.services


@pytest.fixture
def sandbox_provider(local_sandbox_provider: LocalProvider) -> SandboxProvider:
    return local_sandbox_provider


@pytest.fixture
def chat_model() -> ChatModel:
    return ScriptedChatModel()  # answers "done" without tool calls


async def test_files_are_real_and_seen_by_commands(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    project_id, sandbox_id = await new_sandbox(client, user)
    created = await upload(client, user, sandbox_id, "src/app.py", b"print('hi')\n")
    assert created.status_code == 201, created.text
    assert created.json() == {"path": "/workspace/src/app.py", "size": 12}
    # uploaded before the sandbox ever ran; a command in it sees the file and writes another
    provider_id = await started(app, sandbox_id)
    provider: SandboxProvider = app.state.sandboxes.provider
    ran = await provider.exec(provider_id, "python3 src/app.py > out.txt && mkdir -p d/e")
    assert ran.ok, ran.output
    content = await client.get(
        f"/api/sandboxes/{sandbox_id}/files/content",
        params={"path": "/workspace/out.txt"},
        headers=user.headers,
    )
    assert content.status_code == 200 and content.content == b"hi\n"
    names = {
        (f["name"], f["is_dir"])
        for f in (
            await client.get(f"/api/sandboxes/{sandbox_id}/files", headers=user.headers)
        ).json()["files"]
    }
    assert names == {("src", True), ("out.txt", False), ("d", True)}
    assert (await sandbox_of(client, user, project_id))["state"] == "started"


async def test_symlinks_out_of_the_workspace_are_refused(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    provider_id = await started(app, sandbox_id)
    provider: SandboxProvider = app.state.sandboxes.provider
    made = await provider.exec(
        provider_id,
        "ln -s /etc etc_link && ln -s /etc/hostname host_link && ln -s ../.. up_link"
        " && mkdir inside && echo ok > inside/f.txt && ln -s inside in_link",
    )
    assert made.ok, made.output
    base = f"/api/sandboxes/{sandbox_id}/files"
    refused = [
        await client.get(
            f"{base}/content", params={"path": "etc_link/passwd"}, headers=user.headers
        ),
        await client.get(f"{base}/content", params={"path": "host_link"}, headers=user.headers),
        await client.get(
            f"{base}/content", params={"path": "up_link/etc/passwd"}, headers=user.headers
        ),
        await client.get(base, params={"path": "etc_link"}, headers=user.headers),
        await upload(client, user, sandbox_id, "etc_link/evil.conf", b"x"),
        await upload(client, user, sandbox_id, "host_link", b"x"),
    ]
    for response in refused:
        assert response.status_code == 400, (response.request.url, response.text)
        assert response.json()["code"] == "path_outside_workspace"
        assert "root:" not in response.text
    # a link that stays inside works
    inside = await client.get(
        f"{base}/content", params={"path": "in_link/f.txt"}, headers=user.headers
    )
    assert inside.status_code == 200 and inside.content == b"ok\n"
    # deleting a link removes the link, never what it points at
    assert (
        await client.delete(base, params={"path": "etc_link"}, headers=user.headers)
    ).status_code == 204
    check = await provider.exec(provider_id, "test -s /etc/passwd && test ! -L etc_link")
    assert check.ok, check.output


async def test_deleting_the_project_removes_its_sandbox_and_workspace(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser, local_root: Path
) -> None:
    project_id, sandbox_id = await new_sandbox(client, user)
    await upload(client, user, sandbox_id, "data.txt", b"to be deleted")
    provider_id = await started(app, sandbox_id)
    directory = local_root / "sandboxes" / provider_id
    assert directory.is_dir()
    assert await app.state.sandboxes.provider.read_file(provider_id, "data.txt") == (
        b"to be deleted"
    )

    deleted = await client.delete(f"/api/projects/{project_id}", headers=user.headers)
    assert deleted.status_code == 204, deleted.text
    async with app.state.session_factory() as session:
        assert await session.get(Sandbox, uuid.UUID(sandbox_id)) is None
    for _ in range(200):  # the provider's delete runs once the project's delete committed
        if not directory.exists():
            break
        await asyncio.sleep(0.05)
    assert not directory.exists()
    for response in (
        await client.get(f"/api/sandboxes/{sandbox_id}/files", headers=user.headers),
        await client.get(
            f"/api/sandboxes/{sandbox_id}/files/content",
            params={"path": "data.txt"},
            headers=user.headers,
        ),
        await client.get(f"/api/projects/{project_id}/sandbox", headers=user.headers),
    ):
        assert response.status_code == 404


async def test_initiate_files_are_in_the_real_workspace(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    response = await client.post(
        "/api/agent/initiate",
        files=[("prompt", (None, "run it")), ("files", ("job.sh", b"echo from-upload\n"))],
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    sandbox = await sandbox_of(client, user, response.json()["project_id"])
    provider_id = await started(app, sandbox["sandbox_id"])
    ran = await app.state.sandboxes.provider.exec(provider_id, "bash /workspace/job.sh")
    assert ran.ok and ran.stdout == "from-upload\n", ran.output
