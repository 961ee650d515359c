"""SandboxManager: lazy creation, restarts, recreation, idle stop and shutdown, on the scripted
provider and the app's database (both backends)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from shoal.config import Settings
from shoal.db.models import AgentRun, Sandbox
from shoal.db.session import unit_of_work
from shoal.errors import NotFound
from shoal.kit.time import utcnow
from shoal.sandbox import SandboxError, SandboxInfo, SandboxNotFound, SandboxSpec, ScriptedSandbox
from shoal.sandboxes.manager import SandboxManager
from shoal.sandboxes.repository import SandboxRepository
from tests.conftest import TestUser


class CountingSandbox(ScriptedSandbox):
    """The scripted provider, counting creates and starts; ``fail_start`` makes start fail."""

    def __init__(self) -> None:
        super().__init__()
        self.creates = 0
        self.starts = 0
        self.fail_start: str | None = None

    async def create(
        self, spec: SandboxSpec | None = None, *, sandbox_id: str | None = None
    ) -> SandboxInfo:
        self.creates += 1
        await asyncio.sleep(0.01)  # a real create takes a while: let concurrent callers meet
        return await super().create(spec, sandbox_id=sandbox_id)

    async def start(self, sandbox_id: str) -> SandboxInfo:
        self.starts += 1
        if self.fail_start is not None:
            raise SandboxError(self.fail_start)
        return await super().start(sandbox_id)


@pytest.fixture
def fake() -> CountingSandbox:
    return CountingSandbox()


@pytest.fixture
async def manager(
    app: FastAPI, settings: Settings, fake: CountingSandbox
) -> AsyncIterator[SandboxManager]:
    made = SandboxManager(settings, app.state.session_factory, provider=fake)
    yield made
    await made.aclose()


async def _project(client: httpx.AsyncClient, user: TestUser) -> tuple[uuid.UUID, uuid.UUID]:
    """A new thread in a new project: ``(project_id, thread_id)``."""
    response = await client.post("/api/threads", json={"name": "t"}, headers=user.headers)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["project_id"]), uuid.UUID(response.json()["thread_id"])


async def _row(app: FastAPI, sandbox_id: uuid.UUID) -> Sandbox:
    async with app.state.session_factory() as session:
        row = await session.get(Sandbox, sandbox_id)
        assert row is not None
        return row


async def _age(app: FastAPI, sandbox_id: uuid.UUID, seconds: float) -> None:
    async with unit_of_work(app.state.session_factory) as session:
        when = utcnow() - timedelta(seconds=seconds)
        await SandboxRepository(session).set(sandbox_id, last_active_at=when)


async def test_the_provider_sandbox_is_created_and_started_lazily(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: TestUser,
    manager: SandboxManager,
    fake: CountingSandbox,
) -> None:
    project_id, _ = await _project(client, user)
    sandbox_id = await manager.record_for_project(project_id)
    assert await manager.record_for_project(project_id) == sandbox_id
    row = await _row(app, sandbox_id)
    assert (row.state, row.provider_sandbox_id, fake.creates) == ("stopped", None, 0)

    provider_id = await manager.ensure_created(sandbox_id)
    assert provider_id == str(sandbox_id)
    assert (await fake.get(provider_id)).state == "stopped"
    info = await fake.get(provider_id)
    assert info.labels["shoal.project_id"] == str(project_id)
    assert info.labels["shoal.account_id"] == str(user.account_id)
    row = await _row(app, sandbox_id)
    assert (row.state, row.provider_sandbox_id, row.provider) == ("stopped", provider_id, "fake")

    assert await manager.ensure_started(sandbox_id) == provider_id
    assert (await fake.get(provider_id)).state == "started"
    assert (await _row(app, sandbox_id)).state == "started"
    # again: nothing new at the provider
    await manager.ensure_started(sandbox_id)
    assert (fake.creates, fake.starts) == (1, 1)


async def test_unknown_project_is_not_found(manager: SandboxManager) -> None:
    with pytest.raises(NotFound):
        await manager.record_for_project(uuid.uuid4())
    with pytest.raises(NotFound):
        await manager.ensure_started(uuid.uuid4())


async def test_concurrent_starts_create_one_sandbox(
    client: httpx.AsyncClient, user: TestUser, manager: SandboxManager, fake: CountingSandbox
) -> None:
    project_id, _ = await _project(client, user)
    sandbox_id = await manager.record_for_project(project_id)
    ids = await asyncio.gather(*(manager.ensure_started(sandbox_id) for _ in range(5)))
    assert len(set(ids)) == 1
    assert (fake.creates, fake.starts) == (1, 1)


async def test_a_sandbox_that_vanished_at_the_provider_is_recreated(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: TestUser,
    manager: SandboxManager,
    fake: CountingSandbox,
) -> None:
    project_id, _ = await _project(client, user)
    sandbox_id = await manager.record_for_project(project_id)
    provider_id = await manager.ensure_started(sandbox_id)
    await fake.write_file(provider_id, "/workspace/old.txt", b"old")
    await fake.delete(provider_id)  # deleted behind shoal's back (provider cleanup, lost disk)
    with pytest.raises(SandboxNotFound):
        await fake.get(provider_id)

    again = await manager.ensure_started(sandbox_id)
    info = await fake.get(again)
    assert info.state == "started"
    assert fake.creates == 2
    assert await fake.list_files(again) == []  # a new, empty workspace
    row = await _row(app, sandbox_id)
    assert (row.state, row.provider_sandbox_id) == ("started", again)


async def test_a_failed_start_is_recorded_and_retried(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: TestUser,
    manager: SandboxManager,
    fake: CountingSandbox,
) -> None:
    project_id, _ = await _project(client, user)
    sandbox_id = await manager.record_for_project(project_id)
    fake.fail_start = "bubblewrap exploded"
    with pytest.raises(SandboxError):
        await manager.ensure_started(sandbox_id)
    row = await _row(app, sandbox_id)
    assert (row.state, row.error) == ("error", "bubblewrap exploded")
    fake.fail_start = None
    await manager.ensure_started(sandbox_id)
    row = await _row(app, sandbox_id)
    assert (row.state, row.error) == ("started", None)


async def test_stop_idle_spares_busy_and_running_projects(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: TestUser,
    manager: SandboxManager,
    fake: CountingSandbox,
    settings: Settings,
) -> None:
    idle_for = settings.sandbox_idle_stop_seconds + 60
    sandboxes: dict[str, uuid.UUID] = {}
    projects: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}
    for name in ("idle", "running", "recent", "stopped"):
        projects[name] = await _project(client, user)
        sandboxes[name] = await manager.record_for_project(projects[name][0])
        if name != "stopped":
            await manager.ensure_started(sandboxes[name])
        if name != "recent":
            await _age(app, sandboxes[name], idle_for)
    project_id, thread_id = projects["running"]
    async with unit_of_work(app.state.session_factory) as session:
        session.add(
            AgentRun(
                thread_id=thread_id,
                project_id=project_id,
                account_id=user.account_id,
                status="running",
                model_name="scripted",
                worker_id="elsewhere",
                lease_expires_at=utcnow() + timedelta(hours=1),
                started_at=utcnow(),
            )
        )

    assert await manager.stop_idle() == 1
    states = {name: (await _row(app, sid)).state for name, sid in sandboxes.items()}
    assert states == {
        "idle": "stopped",
        "running": "started",
        "recent": "started",
        "stopped": "stopped",
    }
    assert (await fake.get(str(sandboxes["idle"]))).state == "stopped"
    assert (await fake.get(str(sandboxes["running"]))).state == "started"
    assert await manager.stop_idle() == 0
    # the next use starts it again
    await manager.ensure_started(sandboxes["idle"])
    assert (await fake.get(str(sandboxes["idle"]))).state == "started"


async def test_touch_keeps_a_sandbox_from_idling(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser, manager: SandboxManager
) -> None:
    project_id, _ = await _project(client, user)
    sandbox_id = await manager.record_for_project(project_id)
    await manager.ensure_started(sandbox_id)
    await _age(app, sandbox_id, 10_000)
    manager._touched.clear()  # the throttle: as if the last write was long ago
    await manager.touch(sandbox_id)
    assert await manager.stop_idle() == 0
    assert (await _row(app, sandbox_id)).state == "started"


async def test_aclose_marks_what_it_started_stopped(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: TestUser,
    manager: SandboxManager,
    fake: CountingSandbox,
) -> None:
    project_id, _ = await _project(client, user)
    sandbox_id = await manager.record_for_project(project_id)
    provider_id = await manager.ensure_started(sandbox_id)
    assert (await _row(app, sandbox_id)).state == "started"
    await manager.aclose()
    assert (await _row(app, sandbox_id)).state == "stopped"
    assert (await fake.get(provider_id)).state == "stopped"
    # closing twice is harmless (the app's shutdown may follow a manual close)
    await manager.aclose()


async def test_file_operations_recover_a_vanished_sandbox(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: TestUser,
    manager: SandboxManager,
    fake: CountingSandbox,
) -> None:
    project_id, _ = await _project(client, user)
    sandbox_id = await manager.record_for_project(project_id)
    provider_id = await manager.ensure_created(sandbox_id)
    await fake.delete(provider_id)
    listed = await manager.with_sandbox(sandbox_id, lambda pid: fake.list_files(pid))
    assert listed == []
    assert (await fake.get(provider_id)).state == "stopped"
