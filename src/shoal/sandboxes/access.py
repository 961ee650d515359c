"""ProjectSandbox: the :class:`~shoal.tools.sandbox_access.SandboxAccess` a run's tools get."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from shoal.sandbox import SandboxProvider
from shoal.sandbox.base import SessionInfo
from shoal.sandboxes.manager import SandboxManager

ExecReporter = Callable[[float], Awaitable[None]]


class ProjectSandbox:
    """The project's sandbox, resolved and started on the first tool call that needs it."""

    def __init__(
        self,
        manager: SandboxManager,
        *,
        project_id: uuid.UUID,
        public_url: str,
        on_exec: ExecReporter | None = None,
    ) -> None:
        self.manager = manager
        self.project_id = project_id
        self.public_url = public_url.rstrip("/")
        self.sandbox_id: uuid.UUID | None = None
        self._on_exec = on_exec

    @property
    def provider(self) -> SandboxProvider:
        return self.manager.provider

    async def ensure_started(self) -> str:
        if self.sandbox_id is None:
            self.sandbox_id = await self.manager.record_for_project(self.project_id)
        return await self.manager.ensure_started(self.sandbox_id)

    async def record_exec(self, seconds: float) -> None:
        if self.sandbox_id is not None:
            await self.manager.touch(self.sandbox_id)
        if self._on_exec is not None:
            await self._on_exec(seconds)

    async def sessions_seen(self, sessions: list[SessionInfo]) -> None:
        if self.sandbox_id is not None:
            await self.manager.sessions_seen(self.sandbox_id, sessions)

    def port_url(self, port: int) -> str:
        if self.sandbox_id is None:
            raise RuntimeError("port_url before ensure_started")
        return f"{self.public_url}/api/sandboxes/{self.sandbox_id}/ports/{port}/"
