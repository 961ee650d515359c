"""A project's ``sandbox_network`` changed after its sandbox exists: ``PATCH /api/projects/{id}``
applies it to the sandbox (both database backends, the scripted provider)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from shoal.db.models import UsageEntry
from shoal.sandbox import SandboxError, SandboxInfo, SandboxProvider, SandboxState, ScriptedSandbox
from shoal.sandbox.base import Network
from tests.conftest import TestUser
from tests.sandboxes.conftest import new_project, sandbox_of, started


class RefusingSandbox(ScriptedSandbox):
    """The scripted provider; ``refuse`` makes network changes fail, ``restart`` makes them
    restart a running sandbox (as the local provider does)."""

    refuse = False
    restart = False

    async def set_network(self, sandbox_id: str, network: Network) -> SandboxInfo:
        if self.refuse:
            raise SandboxError("the provider is down")
        if self.restart and (await self.get(sandbox_id)).state is SandboxState.STARTED:
            await self.stop(sandbox_id)
            await self.start(sandbox_id)
        return await super().set_network(sandbox_id, network)


@pytest.fixture
def sandbox_provider() -> SandboxProvider:
    return RefusingSandbox()


async def _patch(
    client: httpx.AsyncClient, user: TestUser, project_id: str, network: str
) -> httpx.Response:
    return await client.patch(
        f"/api/projects/{project_id}", json={"sandbox_network": network}, headers=user.headers
    )


async def test_a_new_setting_reaches_the_running_sandbox(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, sandbox_provider: RefusingSandbox
) -> None:
    project_id = await new_project(client, user)
    sandbox_id = (await sandbox_of(client, user, project_id))["sandbox_id"]
    provider_id = await started(app, sandbox_id)
    assert (await sandbox_provider.get(provider_id)).network == "none"
    response = await _patch(client, user, project_id, "open")
    assert response.status_code == 200, response.text
    assert response.json()["sandbox_network"] == "open"
    info = await sandbox_provider.get(provider_id)
    assert (info.network, info.state) == ("open", SandboxState.STARTED)
    # an update that leaves the setting as it is does not touch the sandbox
    sandbox_provider.refuse = True
    same = await client.patch(
        f"/api/projects/{project_id}",
        json={"name": "renamed", "sandbox_network": "open"},
        headers=user.headers,
    )
    assert same.status_code == 200
    assert (await sandbox_provider.get(provider_id)).state is SandboxState.STARTED


async def test_a_sandbox_the_setting_cannot_reach_is_stopped_and_gets_it_at_start(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, sandbox_provider: RefusingSandbox
) -> None:
    """Fail closed: nothing keeps running under the old policy; the next start applies the
    project's setting."""
    project_id = await new_project(client, user, sandbox_network="open")
    sandbox_id = (await sandbox_of(client, user, project_id))["sandbox_id"]
    provider_id = await started(app, sandbox_id)
    sandbox_provider.refuse = True
    response = await _patch(client, user, project_id, "none")
    assert response.status_code == 200, response.text
    info = await sandbox_provider.get(provider_id)
    assert (info.network, info.state) == ("open", SandboxState.STOPPED)
    assert (await sandbox_of(client, user, project_id))["state"] == "stopped"
    sandbox_provider.refuse = False
    assert await started(app, sandbox_id) == provider_id
    info = await sandbox_provider.get(provider_id)
    assert (info.network, info.state) == ("none", SandboxState.STARTED)


async def test_a_project_without_a_provider_sandbox_only_changes_its_setting(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, sandbox_provider: RefusingSandbox
) -> None:
    project_id = await new_project(client, user)
    sandbox_provider.refuse = True  # never asked: there is nothing at the provider yet
    assert (await _patch(client, user, project_id, "open")).status_code == 200
    sandbox_id = (await sandbox_of(client, user, project_id))["sandbox_id"]
    sandbox_provider.refuse = False
    provider_id = await started(app, sandbox_id)
    assert (await sandbox_provider.get(provider_id)).network == "open"  # created with it


async def test_sessions_a_restart_for_the_new_setting_ended_are_charged(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, sandbox_provider: RefusingSandbox
) -> None:
    project_id = await new_project(client, user)
    sandbox_id = (await sandbox_of(client, user, project_id))["sandbox_id"]
    provider_id = await started(app, sandbox_id)
    await sandbox_provider.start_session(provider_id, "server", "sleep 600")
    sandbox_provider.restart = True
    assert (await _patch(client, user, project_id, "open")).status_code == 200
    assert await sandbox_provider.list_sessions(provider_id) == []  # the restart ended it
    async with app.state.session_factory() as session:
        rows = (await session.execute(select(UsageEntry))).scalars().all()
    assert [(r.kind, r.idempotency_key.split(":")[0]) for r in rows] == [("exec", "session")]
