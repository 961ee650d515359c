"""Helpers for the project-sandbox tests (``shoal.sandboxes``): API shortcuts, a real local
provider for modules that need one, and a live server for WebSocket tests.

API tests run on both database backends through the ``client`` fixture. The default provider
is the scripted fake (``tests/conftest.py``); a module that needs real processes, real files on
disk or real ports overrides ``sandbox_provider`` with :func:`real_local_provider`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.sandbox import LocalProvider
from shoal.sandboxes.manager import SandboxManager
from tests.conftest import TestUser
from tests.sandbox.conftest import local_provider, require_bubblewrap, temporary_sandbox_root
from tests.support import serve_app


@pytest.fixture
def local_root() -> Iterator[Path]:
    """Where a real provider keeps its sandboxes: under /var/tmp, traversable (0711) by the
    sandboxes' own uids (pytest's tmp_path is private to root)."""
    yield from temporary_sandbox_root("shoal-sbxs-")


@pytest.fixture
async def local_sandbox_provider(local_root: Path) -> LocalProvider:
    """A bubblewrap provider (skips when bubblewrap cannot run here). A module uses it with
    ``def sandbox_provider(local_sandbox_provider): return local_sandbox_provider``; the app
    closes it (its running sandboxes stop) before ``local_root`` is removed. Workspaces are
    plain directories: size-limited images (loop mounts) are tests/sandbox's subject, and
    sharing the host's loop devices with parallel test runs only adds flakiness here."""
    await require_bubblewrap()
    return local_provider(local_root, workspace_images=False)


async def new_project(
    client: httpx.AsyncClient, user: TestUser, *, public: bool = False, **fields: Any
) -> str:
    body = {"name": "sandbox test", "is_public": public, **fields}
    response = await client.post("/api/projects", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["project_id"])


async def sandbox_of(client: httpx.AsyncClient, user: TestUser, project_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/projects/{project_id}/sandbox", headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def new_sandbox(
    client: httpx.AsyncClient, user: TestUser, *, public: bool = False
) -> tuple[str, str]:
    """A new project's sandbox record: ``(project_id, sandbox_id)``."""
    project_id = await new_project(client, user, public=public)
    return project_id, str((await sandbox_of(client, user, project_id))["sandbox_id"])


async def upload(
    client: httpx.AsyncClient,
    user: TestUser | None,
    sandbox_id: str,
    path: str,
    data: bytes,
) -> httpx.Response:
    return await client.post(
        f"/api/sandboxes/{sandbox_id}/files",
        data={"path": path},
        files={"file": ("upload.bin", data)},
        headers=user.headers if user else {},
    )


async def started(app: FastAPI, sandbox_id: str) -> str:
    """Start the sandbox through the app's manager; the provider's id for it."""
    manager: SandboxManager = app.state.sandboxes
    return await manager.ensure_started(uuid.UUID(sandbox_id))


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    """The app (lifespan run by the ``app`` fixture) behind uvicorn on a free port, in this
    event loop — WebSockets need a real server; yields ``host:port``."""
    async with serve_app(app) as address:
        yield address
