"""Background sessions' sandbox time lands in the usage ledger when they end: seen finished by
a tool, or ended by their sandbox's stop or deletion (the scripted provider, both databases)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from shoal.db.models import UsageEntry
from shoal.sandbox import SandboxProvider
from shoal.sandboxes.manager import SandboxManager
from tests.conftest import TestUser
from tests.sandboxes.conftest import new_sandbox, started


async def _session_rows(app: FastAPI) -> list[UsageEntry]:
    async with app.state.session_factory() as session:
        rows = await session.execute(
            select(UsageEntry).where(UsageEntry.idempotency_key.startswith("session:"))
        )
        return list(rows.scalars().all())


async def _until_finished(provider: SandboxProvider, provider_id: str, name: str) -> None:
    for _ in range(200):
        if not (await provider.read_session(provider_id, name)).running:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"session {name} never finished")


async def test_a_stopped_sandbox_charges_the_sessions_it_ended(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    manager: SandboxManager = app.state.sandboxes
    project_id, sandbox_id = await new_sandbox(client, user)
    provider_id = await started(app, sandbox_id)
    await manager.provider.start_session(provider_id, "server", "sleep 600")
    await asyncio.sleep(0.3)
    await manager.stop(uuid.UUID(sandbox_id))
    (row,) = await _session_rows(app)
    assert row.kind == "exec" and row.account_id == user.account_id
    assert str(row.project_id) == project_id and row.run_id is None
    assert 0.3 <= row.exec_seconds < 30


async def test_a_finished_session_is_charged_once_however_often_it_is_seen(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    manager: SandboxManager = app.state.sandboxes
    _, sandbox_id = await new_sandbox(client, user)
    provider_id = await started(app, sandbox_id)
    await manager.provider.start_session(provider_id, "job", "sleep 0.2")
    await _until_finished(manager.provider, provider_id, "job")
    sessions = await manager.provider.list_sessions(provider_id)
    await manager.sessions_seen(uuid.UUID(sandbox_id), sessions)
    await manager.sessions_seen(uuid.UUID(sandbox_id), sessions)
    await manager.stop(uuid.UUID(sandbox_id))  # lists it once more as it stops
    (row,) = await _session_rows(app)
    assert 0.2 <= row.exec_seconds < 10  # its own run time, not until the stop
    # a running session seen by a tool is not charged yet
    provider_id = await started(app, sandbox_id)
    await manager.provider.start_session(provider_id, "srv", "sleep 600")
    await manager.sessions_seen(
        uuid.UUID(sandbox_id), await manager.provider.list_sessions(provider_id)
    )
    assert len(await _session_rows(app)) == 1


async def test_deleting_the_project_charges_its_running_sessions(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    manager: SandboxManager = app.state.sandboxes
    project_id, sandbox_id = await new_sandbox(client, user)
    provider_id = await started(app, sandbox_id)
    await manager.provider.start_session(provider_id, "server", "sleep 600")
    deleted = await client.delete(f"/api/projects/{project_id}", headers=user.headers)
    assert deleted.status_code == 204
    for _ in range(100):  # the provider's sandbox goes once the delete has committed
        if rows := await _session_rows(app):
            break
        await asyncio.sleep(0.02)
    (row,) = rows
    assert str(row.project_id) == project_id and row.account_id == user.account_id
