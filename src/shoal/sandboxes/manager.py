"""SandboxManager: the bridge between projects (rows) and the provider's sandboxes.

One per process. The row comes first (``GET …/sandbox`` creates it ``stopped``); the provider's
sandbox is created on first use and started before any tool call (lazily — a run that never
calls a tool never starts one). A sandbox that vanished at the provider is recreated; one whose
project had no tool call, file or port traffic for ``SHOAL_SANDBOX_IDLE_STOP_SECONDS`` is stopped
(never while a run of its project is running) and starts again on the next use.

Provider calls can take seconds (Daytona) and never run inside a caller's transaction: the
manager uses short transactions of its own around them. Concurrent starts of one sandbox in
one process share a lock; across processes the providers' create/start are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shoal.config import Settings
from shoal.db.models import Project, Sandbox
from shoal.db.session import on_commit, unit_of_work
from shoal.errors import NotFound, ShoalError
from shoal.kit.time import utcnow
from shoal.sandbox import SandboxNotFound, SandboxProvider, SandboxSpec, build_provider
from shoal.sandbox.base import WORKSPACE, Network, SandboxNotRunning, SessionInfo
from shoal.sandboxes.repository import SandboxRepository

log = structlog.get_logger(__name__)
ProviderFactory = Callable[[Settings], SandboxProvider]
_TOUCH_EVERY = 15.0  # seconds between last_active_at writes for one sandbox


@dataclass(frozen=True, slots=True)
class SessionTime:
    """A background session that ended, and the sandbox seconds it used."""

    sandbox_id: uuid.UUID
    account_id: uuid.UUID
    project_id: uuid.UUID
    session: SessionInfo
    seconds: float

    @property
    def key(self) -> str:
        """One ledger row per session run: its sandbox, name and start."""
        started = self.session.started_at.isoformat() if self.session.started_at else "?"
        return f"session:{self.sandbox_id}:{self.session.name}:{started}"


# Stores ended sessions' time (the runs layer meters it in the usage ledger).
SessionMeter = Callable[[list[SessionTime]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Uploaded:
    paths: list[str]
    sandbox_id: uuid.UUID
    provider_id: str


class SandboxManager:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        provider: SandboxProvider | None = None,
        provider_factory: ProviderFactory = build_provider,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self._provider = provider
        self._provider_factory = provider_factory
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._touched: dict[uuid.UUID, float] = {}
        self._idle_task: asyncio.Task[None] | None = None
        self._started: set[uuid.UUID] = set()
        self.meter: SessionMeter | None = None
        """Where the time of ended background sessions goes (none: not metered)."""

    @property
    def provider(self) -> SandboxProvider:
        """The configured provider, built on first use (so an API that never touches a sandbox
        needs no sandbox support on its host)."""
        if self._provider is None:
            self._provider = self._provider_factory(self.settings)
        return self._provider

    @property
    def provider_name(self) -> str:
        return self._provider.name if self._provider is not None else self.settings.sandbox_provider

    def _lock(self, sandbox_id: uuid.UUID) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    # -- rows ------------------------------------------------------------------------------------

    async def record(self, session: AsyncSession, project: Project) -> Sandbox:
        """The project's sandbox row, created (``stopped``) if it has none."""
        return await SandboxRepository(session).get_or_create(project, provider=self.provider_name)

    async def record_for_project(self, project_id: uuid.UUID) -> uuid.UUID:
        """The id of the project's sandbox row (created if absent), in a transaction of its own."""
        async with unit_of_work(self.session_factory) as session:
            repo = SandboxRepository(session)
            project = await repo.project(project_id)
            if project is None:
                raise NotFound("Project not found.")
            return (await self.record(session, project)).sandbox_id

    async def _load(self, sandbox_id: uuid.UUID) -> tuple[Sandbox, Project]:
        async with self.session_factory() as session:
            repo = SandboxRepository(session)
            row = await repo.get(sandbox_id)
            project = None if row is None else await repo.project(row.project_id)
            if row is None or project is None:
                raise NotFound("Sandbox not found.")
            session.expunge_all()
            return row, project

    async def _set(self, sandbox_id: uuid.UUID, **values: object) -> None:
        async with unit_of_work(self.session_factory) as session:
            await SandboxRepository(session).set(sandbox_id, **values)

    # -- provider lifecycle ----------------------------------------------------------------------

    async def ensure_created(self, sandbox_id: uuid.UUID) -> str:
        """The provider's id for this sandbox, creating it at the provider on first use."""
        async with self._lock(sandbox_id):
            return await self._ensure_created(sandbox_id)

    async def _ensure_created(self, sandbox_id: uuid.UUID) -> str:
        row, project = await self._load(sandbox_id)
        if row.provider_sandbox_id is not None and row.state != "deleted":
            return row.provider_sandbox_id
        await self._set(sandbox_id, state="creating", error=None)
        spec = SandboxSpec(
            network=_network(project),
            labels={
                "shoal.sandbox_id": str(sandbox_id),
                "shoal.project_id": str(project.project_id),
                "shoal.account_id": str(project.account_id),
            },
            auto_stop_minutes=max(1, int(self.settings.sandbox_idle_stop_seconds // 60)),
        )
        try:
            info = await self.provider.create(spec, sandbox_id=str(sandbox_id))
        except BaseException as exc:
            await self._failed(sandbox_id, exc)
            raise
        await self._set(
            sandbox_id,
            provider_sandbox_id=info.sandbox_id,
            provider=self.provider.name,
            state=str(info.state),
        )
        log.info("sandbox.created", sandbox_id=str(sandbox_id), provider=self.provider.name)
        return info.sandbox_id

    async def ensure_started(self, sandbox_id: uuid.UUID) -> str:
        """Start the sandbox if it is not running (creating or recreating it as needed)."""
        async with self._lock(sandbox_id):
            provider_id = await self._ensure_created(sandbox_id)
            try:
                info = await self.provider.get(provider_id)
            except SandboxNotFound:
                provider_id = await self._recreate_locked(sandbox_id, lost=provider_id)
                info = await self.provider.get(provider_id)
            running = info.state == "started" and sandbox_id in self._started
            if not running:  # else every tool call would rewrite the row: touch() throttles
                wanted = _network((await self._load(sandbox_id))[1])
                if info.network != wanted:  # the project's setting changed while it was away
                    info = await self.provider.set_network(provider_id, wanted)
                if info.state != "started":
                    try:
                        await self.provider.start(provider_id)
                    except BaseException as exc:
                        await self._failed(sandbox_id, exc)
                        raise
                    log.info("sandbox.started", sandbox_id=str(sandbox_id))
                await self._set(sandbox_id, state="started", error=None, last_active_at=utcnow())
                self._touched[sandbox_id] = time.monotonic()
                self._started.add(sandbox_id)
        if running:
            await self.touch(sandbox_id)
        self._start_idle_loop()
        return provider_id

    async def _failed(self, sandbox_id: uuid.UUID, exc: BaseException) -> None:
        message = exc.message if isinstance(exc, ShoalError) else type(exc).__name__
        log.warning("sandbox.failed", sandbox_id=str(sandbox_id), error=message)
        with contextlib.suppress(Exception):
            await asyncio.shield(self._set(sandbox_id, state="error", error=message[:2000]))

    async def stop(self, sandbox_id: uuid.UUID) -> None:
        async with self._lock(sandbox_id):
            row, _ = await self._load(sandbox_id)
            if row.provider_sandbox_id is not None and row.state != "deleted":
                sessions = await self._sessions(row.provider_sandbox_id)
                with contextlib.suppress(SandboxNotFound):
                    await self.provider.stop(row.provider_sandbox_id)
                await self._ended(row, sessions, gone=True)
            await self._set(sandbox_id, state="stopped")
            self._started.discard(sandbox_id)
        log.info("sandbox.stopped", sandbox_id=str(sandbox_id))

    # -- background sessions' time ---------------------------------------------------------------

    async def _sessions(self, provider_id: str) -> list[SessionInfo]:
        """The sandbox's background sessions (none when it is not running or unreachable)."""
        try:
            return await self.provider.list_sessions(provider_id)
        except Exception:
            return []

    async def _ended(
        self,
        owner: Sandbox | tuple[uuid.UUID, uuid.UUID, uuid.UUID],
        sessions: list[SessionInfo],
        *,
        gone: bool = False,
    ) -> None:
        """Meter the sessions that ended (``gone``: all of them ended now — the sandbox stopped
        or was deleted). A session is metered once (the ledger is idempotent by its key)."""
        if self.meter is None or not sessions:
            return
        if isinstance(owner, Sandbox):
            owner = (owner.sandbox_id, owner.account_id, owner.project_id)
        sandbox_id, account_id, project_id = owner
        now = utcnow()
        ended = [
            SessionTime(sandbox_id, account_id, project_id, info, info.seconds(now) or 0.0)
            for info in sessions
            if info.started_at is not None and (gone or not info.running)
        ]
        if not ended:
            return
        try:
            await self.meter(ended)
        except Exception:
            log.exception("sandbox.session_metering_failed", sandbox_id=str(sandbox_id))

    async def sessions_seen(self, sandbox_id: uuid.UUID, sessions: list[SessionInfo]) -> None:
        """A tool saw these sessions: meter those that have ended."""
        if self.meter is None or all(s.running or s.started_at is None for s in sessions):
            return
        row, _ = await self._load(sandbox_id)
        await self._ended(row, sessions)

    async def touch(self, sandbox_id: uuid.UUID) -> None:
        """Note activity (throttled): keeps a sandbox in use from being stopped as idle."""
        now = time.monotonic()
        if now - self._touched.get(sandbox_id, 0.0) < _TOUCH_EVERY:
            return
        self._touched[sandbox_id] = now
        async with unit_of_work(self.session_factory) as session:
            await SandboxRepository(session).touch(sandbox_id)

    async def with_sandbox(
        self, sandbox_id: uuid.UUID, operation: Callable[[str], Awaitable[object]]
    ) -> object:
        """Run a file operation: on the created sandbox, or — for providers whose files need a
        running sandbox (Daytona) — after starting it. A sandbox that vanished at the provider
        is recreated (empty), as :meth:`ensure_started` does."""
        provider_id = await self.ensure_created(sandbox_id)
        try:
            result = await self._operate(sandbox_id, provider_id, operation)
        except SandboxNotFound:
            provider_id = await self._recreate(sandbox_id, lost=provider_id)
            result = await self._operate(sandbox_id, provider_id, operation)
        await self.touch(sandbox_id)
        return result

    async def _operate(
        self,
        sandbox_id: uuid.UUID,
        provider_id: str,
        operation: Callable[[str], Awaitable[object]],
    ) -> object:
        try:
            return await operation(provider_id)
        except SandboxNotRunning:
            return await operation(await self.ensure_started(sandbox_id))

    async def _recreate(self, sandbox_id: uuid.UUID, *, lost: str) -> str:
        async with self._lock(sandbox_id):
            return await self._recreate_locked(sandbox_id, lost=lost)

    async def _recreate_locked(self, sandbox_id: uuid.UUID, *, lost: str) -> str:
        """A new (empty) provider sandbox for one that vanished at the provider."""
        row, _ = await self._load(sandbox_id)
        if row.provider_sandbox_id == lost:  # else a concurrent caller recreated it already
            log.warning("sandbox.vanished", sandbox_id=str(sandbox_id))
            await self._set(sandbox_id, state="deleted", provider_sandbox_id=None)
            self._started.discard(sandbox_id)
        return await self._ensure_created(sandbox_id)

    async def upload_in(
        self, session: AsyncSession, project: Project, files: list[tuple[str, bytes]]
    ) -> Uploaded:
        """Put ``files`` (``(name, data)``) into a new project's ``/workspace`` inside the
        caller's transaction (``initiate``: the files exist before the run is accepted). Only the
        base name of each file is used. A caller whose transaction then fails deletes the
        provider's sandbox (``delete_at_provider``) so no orphan workspace stays behind."""
        row = await self.record(session, project)
        spec = SandboxSpec(
            network=_network(project),
            labels={
                "shoal.sandbox_id": str(row.sandbox_id),
                "shoal.project_id": str(project.project_id),
                "shoal.account_id": str(project.account_id),
            },
        )
        info = await self.provider.create(spec, sandbox_id=str(row.sandbox_id))
        row.provider_sandbox_id, row.provider, row.state = (
            info.sandbox_id,
            self.provider.name,
            str(info.state),
        )
        paths = []
        for name, data in files:
            entry = await self.provider.write_file(info.sandbox_id, f"{WORKSPACE}/{name}", data)
            paths.append(entry.path)
        await session.flush()
        return Uploaded(paths, row.sandbox_id, info.sandbox_id)

    # -- network policy --------------------------------------------------------------------------

    async def network_changed(self, session: AsyncSession, project: Project) -> None:
        """Update hook: once the project's new ``sandbox_network`` commits, its sandbox gets it
        (a running local sandbox restarts). Where that fails the sandbox is stopped instead —
        nothing runs under the old policy — and its next start applies the setting."""
        row = await SandboxRepository(session).for_project(project.project_id)
        if row is None or row.provider_sandbox_id is None:
            return  # created later, with the new setting
        sandbox_id, wanted = row.sandbox_id, _network(project)

        async def _apply() -> None:
            await self.apply_network(sandbox_id, wanted)

        on_commit(session, _apply)

    async def apply_network(self, sandbox_id: uuid.UUID, network: Network) -> None:
        async with self._lock(sandbox_id):
            row, _ = await self._load(sandbox_id)
            if row.provider_sandbox_id is None or row.state == "deleted":
                return
            before = await self._sessions(row.provider_sandbox_id)
            try:
                await self.provider.set_network(row.provider_sandbox_id, network)
                log.info("sandbox.network_changed", sandbox_id=str(sandbox_id), network=network)
                # a provider that restarted the sandbox for it ended its sessions
                after = {s.name: s for s in await self._sessions(row.provider_sandbox_id)}
                ended = [s for s in before if s.running and s.name not in after]
                await self._ended(row, ended, gone=True)
                return
            except SandboxNotFound:
                return  # recreated on next use, with the project's setting
            except Exception:
                log.exception("sandbox.network_change_failed", sandbox_id=str(sandbox_id))
            with contextlib.suppress(Exception):
                await self.provider.stop(row.provider_sandbox_id)
                await self._ended(row, before, gone=True)
            self._started.discard(sandbox_id)
            with contextlib.suppress(Exception):
                await self._set(sandbox_id, state="stopped")

    # -- deletion --------------------------------------------------------------------------------

    async def before_project_delete(self, session: AsyncSession, project_id: uuid.UUID) -> None:
        """Delete hook: the row goes with the project (cascade); the provider's sandbox and its
        workspace are deleted once that commits (never for a rolled-back delete)."""
        row = await SandboxRepository(session).for_project(project_id)
        if row is None or row.provider_sandbox_id is None:
            return
        provider_id, sandbox_id = row.provider_sandbox_id, row.sandbox_id
        owner = (row.sandbox_id, row.account_id, row.project_id)

        async def _delete() -> None:
            await self.delete_at_provider(sandbox_id, provider_id, owner=owner)

        on_commit(session, _delete)

    async def delete_at_provider(
        self,
        sandbox_id: uuid.UUID,
        provider_id: str,
        *,
        owner: tuple[uuid.UUID, uuid.UUID, uuid.UUID] | None = None,
    ) -> None:
        """Delete the provider's sandbox; ``owner`` (sandbox, account, project ids — its row is
        gone by now) is charged for the background sessions that ended with it."""
        async with self._lock(sandbox_id):
            sessions = await self._sessions(provider_id) if owner is not None else []
            try:
                await self.provider.delete(provider_id)
            except SandboxNotFound:
                pass
            except Exception:
                log.exception("sandbox.delete_failed", provider_sandbox_id=provider_id)
                return
            if owner is not None:
                await self._ended(owner, sessions, gone=True)
        self._locks.pop(sandbox_id, None)
        self._touched.pop(sandbox_id, None)
        log.info("sandbox.deleted", sandbox_id=str(sandbox_id))

    # -- idle stop -------------------------------------------------------------------------------

    def _start_idle_loop(self) -> None:
        if self._idle_task is None or self._idle_task.done():
            self._idle_task = asyncio.create_task(self._idle_loop(), name="sandbox-idle-stop")

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sandbox_idle_check_seconds)
            try:
                await self.stop_idle()
            except Exception:
                log.exception("sandbox.idle_check_failed")

    async def stop_idle(self) -> int:
        """Stop started sandboxes idle past the setting whose project runs nothing; how many."""
        before = utcnow() - timedelta(seconds=self.settings.sandbox_idle_stop_seconds)
        async with self.session_factory() as session:
            idle = [row.sandbox_id for row in await SandboxRepository(session).idle(before=before)]
        stopped = 0
        for sandbox_id in idle:
            try:
                await self.stop(sandbox_id)
                stopped += 1
            except Exception:
                log.exception("sandbox.idle_stop_failed", sandbox_id=str(sandbox_id))
        if stopped:
            log.info("sandbox.idle_stopped", count=stopped)
        return stopped

    async def aclose(self) -> None:
        """Stop the idle loop and release the provider (local sandboxes this process started
        stop, their background sessions metered; they start again on next use)."""
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(BaseException):
                await self._idle_task
        provider, stops = self._provider, bool(getattr(self._provider, "stops_on_close", False))
        running: list[tuple[Sandbox, list[SessionInfo]]] = []
        if provider is not None and stops and self.meter is not None:
            for sandbox_id in list(self._started):
                with contextlib.suppress(Exception):
                    row, _ = await self._load(sandbox_id)
                    if row.provider_sandbox_id is not None:
                        running.append((row, await self._sessions(row.provider_sandbox_id)))
        if provider is not None:
            await provider.aclose()
        for row, sessions in running:  # they ended with the sandboxes
            await self._ended(row, sessions, gone=True)
        if stops:  # the provider stopped what this process started (Daytona's run on)
            for sandbox_id in list(self._started):
                with contextlib.suppress(Exception):
                    await self._set(sandbox_id, state="stopped")
        self._started.clear()


def _network(project: Project) -> Network:
    return "open" if project.sandbox_network == "open" else "none"
