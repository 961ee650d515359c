"""What sandbox tools see of the run's project sandbox (``ToolContext.sandbox``).

The runs layer hands every tool call a :class:`SandboxAccess`: it starts the project's sandbox on
first use (lazily — a run that never touches a tool never starts one), records exec seconds in
the usage ledger, and knows the public relay URL of a port. Tools never see tenants or the
database; tests use :class:`StaticSandbox` over any provider (the scripted fake, the local one).

The helpers below are what the sandbox tools (``tools/builtin/{shell,files,image}.py``) share:
:func:`open_sandbox` (a clear failure where ``ctx.sandbox`` is unset, else the started sandbox),
:func:`workspace_path` (confinement to ``/workspace``) and :func:`reports_failures`, which turns
the sandbox's errors (``path_outside_workspace``, missing files or sessions, …) into failed
results the model reads and can act on.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import structlog

from shoal.errors import PathOutsideWorkspace, ShoalError
from shoal.sandbox.base import (
    WORKSPACE,
    FileEntry,
    FileNotFoundInSandbox,
    SandboxProvider,
    SessionInfo,
)
from shoal.sandbox.paths import sandbox_path, workspace_parts
from shoal.tools.base import ToolContext, ToolResult


@runtime_checkable
class SandboxAccess(Protocol):
    """The run's sandbox: a provider and a lazily started sandbox id."""

    provider: SandboxProvider

    async def ensure_started(self) -> str:
        """Start the sandbox if needed (creating it on first use); its provider id."""
        ...

    async def record_exec(self, seconds: float) -> None:
        """Report ``seconds`` of command execution (usage ledger, metrics)."""
        ...

    async def sessions_seen(self, sessions: list[SessionInfo]) -> None:
        """Report background sessions a tool saw (those that ended are metered)."""
        ...

    def port_url(self, port: int) -> str:
        """The public URL that relays HTTP/WebSocket traffic to ``localhost:port`` inside."""
        ...


class StaticSandbox:
    """A :class:`SandboxAccess` over an existing sandbox (tests, scripts)."""

    def __init__(
        self,
        provider: SandboxProvider,
        sandbox_id: str,
        *,
        base_url: str = "http://127.0.0.1:8000",
        on_exec: Callable[[float], Awaitable[None]] | None = None,
        on_sessions: Callable[[list[SessionInfo]], Awaitable[None]] | None = None,
    ) -> None:
        self.provider = provider
        self.sandbox_id = sandbox_id
        self.base_url = base_url.rstrip("/")
        self.exec_seconds = 0.0
        self._on_exec = on_exec
        self._on_sessions = on_sessions

    async def ensure_started(self) -> str:
        info = await self.provider.get(self.sandbox_id)
        if info.state != "started":
            await self.provider.start(self.sandbox_id)
        return self.sandbox_id

    async def record_exec(self, seconds: float) -> None:
        self.exec_seconds += seconds
        if self._on_exec is not None:
            await self._on_exec(seconds)

    async def sessions_seen(self, sessions: list[SessionInfo]) -> None:
        if self._on_sessions is not None:
            await self._on_sessions(sessions)

    def port_url(self, port: int) -> str:
        return f"{self.base_url}/api/sandboxes/{self.sandbox_id}/ports/{port}/"


# -- what every sandbox tool shares ------------------------------------------------------------

NO_SANDBOX = (
    "No sandbox is available here: sandbox tools only work inside an agent run of a project."
)
_OUTSIDE_HINT = f" Paths are relative to {WORKSPACE} or absolute under {WORKSPACE}/."

log = structlog.get_logger(__name__)
_Method = TypeVar("_Method", bound=Callable[..., Awaitable[ToolResult]])


class ToolFailure(Exception):
    """Ends a sandbox tool call with ``ToolResult.fail(message)`` (see :func:`reports_failures`)."""

    def __init__(self, message: str, **metadata: Any) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = metadata


async def open_sandbox(ctx: ToolContext) -> tuple[SandboxAccess, str]:
    """The run's sandbox, started (``ToolFailure`` when this context has none)."""
    access = ctx.sandbox
    if access is None or not isinstance(access, SandboxAccess):
        raise ToolFailure(NO_SANDBOX)
    return access, await access.ensure_started()


async def meter_sessions(box: SandboxAccess, sessions: list[SessionInfo]) -> None:
    """Report sessions a tool saw; a metering hiccup must not fail the tool."""
    try:
        await box.sessions_seen(sessions)
    except Exception:
        log.exception("sandbox.sessions_seen_failed")


async def meter_exec(box: SandboxAccess, seconds: float) -> None:
    """Report exec time; a metering hiccup must not turn a command's result into an error."""
    try:
        await box.record_exec(seconds)
    except Exception:
        log.exception("sandbox.record_exec_failed", seconds=seconds)


def workspace_path(path: str) -> str:
    """``path`` as an absolute in-sandbox path under ``/workspace`` (else ``ToolFailure``)."""
    try:
        return sandbox_path(workspace_parts(path))
    except PathOutsideWorkspace as exc:
        raise ToolFailure(exc.message + _OUTSIDE_HINT) from None


async def file_entry(box: SandboxAccess, sandbox_id: str, path: str) -> FileEntry | None:
    """The directory entry of ``path`` (absolute), or ``None`` when there is none."""
    parent, name = posixpath.split(path)
    try:
        entries = await box.provider.list_files(sandbox_id, parent)
    except FileNotFoundInSandbox:
        return None
    return next((entry for entry in entries if entry.name == name), None)


def reports_failures(method: _Method) -> _Method:
    """Turn :class:`ToolFailure` and the sandbox's own errors into a failed result the model
    reads — a wrong path or a missing session is the model's to fix, not a crash.

    Put it under ``@tool_function``; the signature (and so the schema) is unchanged.
    """

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> ToolResult:
        try:
            return await method(*args, **kwargs)
        except ToolFailure as exc:
            return ToolResult.fail(exc.message, **exc.metadata)
        except PathOutsideWorkspace as exc:
            return ToolResult.fail(exc.message + _OUTSIDE_HINT)
        except ShoalError as exc:
            return ToolResult.fail(exc.message)

    return wrapper  # type: ignore[return-value]


def keep_tail(text: str, limit: int, *, dropped: int = 0) -> tuple[str, int]:
    """The newest ``limit`` characters of ``text`` (command output: the end matters most),
    with a marker naming how much was left out (``dropped``: characters already gone before
    ``text``); ``(text, omitted)``."""
    omitted = dropped + max(0, len(text) - limit)
    if not omitted:
        return text, 0
    tail = text[-limit:] if len(text) > limit else text
    return f"[… {omitted} earlier characters omitted …]\n{tail}", omitted
