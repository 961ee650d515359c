"""Project sandboxes over HTTP: access rules, the sandbox record, and files.

Access follows the project (DESIGN.md §4, Tenancy): members of its account read and write; a
public project's sandbox and files can be read by anyone, never written or managed. A sandbox
the caller cannot read does not exist for them (404).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.accounts import admin as account_admin
from shoal.auth.principal import Principal
from shoal.db.models import Project, Sandbox
from shoal.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized
from shoal.kit.ids import parse_id
from shoal.sandbox import FileEntry, SandboxNotRunning
from shoal.sandbox.base import WORKSPACE
from shoal.sandboxes.manager import SandboxManager
from shoal.sandboxes.repository import SandboxRepository


async def _check_write(
    session: AsyncSession, project: Project, is_member: bool, principal: Principal | None
) -> None:
    if is_member:
        await account_admin.ensure_active(session, project.account_id)  # suspended: 403
        return
    if principal is None:
        raise Unauthorized("Sign in to change this sandbox.")
    raise Forbidden(
        "This project is public: you can read its sandbox, but only members of its account can "
        "change it."
    )


async def project_sandbox(
    session: AsyncSession,
    principal: Principal | None,
    manager: SandboxManager,
    *,
    project_id: str,
    write: bool,
) -> Sandbox:
    """The project's sandbox record (created ``stopped`` if absent), access checked."""
    parsed = parse_id(project_id)
    found = (
        None
        if parsed is None
        else await SandboxRepository(session).readable_project(parsed, principal)
    )
    if found is None:
        raise NotFound("Project not found.")
    project, is_member = found
    if write:
        await _check_write(session, project, is_member, principal)
    return await manager.record(session, project)


async def load_sandbox(
    session: AsyncSession, principal: Principal | None, sandbox_id: str, *, write: bool
) -> tuple[Sandbox, Project]:
    parsed = parse_id(sandbox_id)
    found = None if parsed is None else await SandboxRepository(session).readable(parsed, principal)
    if found is None:
        raise NotFound("Sandbox not found.")
    sandbox, project, is_member = found
    if write:
        await _check_write(session, project, is_member, principal)
    return sandbox, project


async def refreshed(session: AsyncSession, manager: SandboxManager, sandbox: Sandbox) -> Sandbox:
    """``sandbox`` with ``state`` corrected from the provider when shoal's view is stale (a
    sandbox stopped by a restart or the provider's own auto-stop)."""
    if sandbox.state != "started" or sandbox.provider_sandbox_id is None:
        return sandbox
    try:
        info = await manager.provider.get(sandbox.provider_sandbox_id)
        state = str(info.state)
    except NotFound:
        state = "deleted"
    if state != sandbox.state:
        await SandboxRepository(session).set(sandbox.sandbox_id, state=state)
        await session.refresh(sandbox)
    return sandbox


async def ensure_active(
    session: AsyncSession, manager: SandboxManager, sandbox: Sandbox
) -> Sandbox:
    """Start the sandbox now (what a client calls before showing a terminal or preview)."""
    await manager.ensure_started(sandbox.sandbox_id)
    await session.refresh(sandbox)
    return sandbox


# -- files ---------------------------------------------------------------------------------------


def _path(path: str | None) -> str:
    if path is None or not path.strip():
        return WORKSPACE
    if "\x00" in path:
        raise BadRequest("The path contains a NUL byte.")
    return path


async def list_files(
    manager: SandboxManager, sandbox: Sandbox, path: str | None
) -> list[FileEntry]:
    target = _path(path)
    result = await manager.with_sandbox(
        sandbox.sandbox_id, lambda pid: manager.provider.list_files(pid, target)
    )
    return cast(list[FileEntry], result)


async def read_file(manager: SandboxManager, sandbox: Sandbox, path: str | None) -> bytes:
    if path is None or not path.strip():
        raise BadRequest("Give the file's path: ?path=/workspace/…")
    target = _path(path)
    result = await manager.with_sandbox(
        sandbox.sandbox_id, lambda pid: manager.provider.read_file(pid, target)
    )
    return cast(bytes, result)


async def write_file(
    manager: SandboxManager, sandbox: Sandbox, path: str, data: bytes, *, max_bytes: int
) -> FileEntry:
    if not path.strip():
        raise BadRequest("Give the file's path.")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The file is {len(data)} bytes; the limit is {max_bytes}.")
    target = _path(path)
    result = await manager.with_sandbox(
        sandbox.sandbox_id, lambda pid: manager.provider.write_file(pid, target, data)
    )
    return cast(FileEntry, result)


async def delete_file(manager: SandboxManager, sandbox: Sandbox, path: str | None) -> None:
    if path is None or not path.strip():
        raise BadRequest("Give the path to delete: ?path=/workspace/…")
    target = _path(path)
    await manager.with_sandbox(
        sandbox.sandbox_id, lambda pid: manager.provider.delete_file(pid, target)
    )


async def started_provider_id(manager: SandboxManager, sandbox: Sandbox) -> str:
    """The provider id of a *running* sandbox (the port relay never starts one: a server in a
    stopped sandbox is gone anyway)."""
    if sandbox.provider_sandbox_id is None or sandbox.state == "deleted":
        raise SandboxNotRunning("The sandbox is not running; nothing listens on its ports.")
    await manager.touch(sandbox.sandbox_id)
    return sandbox.provider_sandbox_id
