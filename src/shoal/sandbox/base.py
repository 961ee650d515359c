"""The sandbox provider protocol: what every provider (local bwrap, Daytona, the fake) offers.

A provider manages sandboxes by id — it knows nothing of tenants or projects. Every path given
to a file operation is confined to ``/workspace`` (:func:`shoal.sandbox.paths.workspace_parts`);
``..``, absolute paths elsewhere and symlinks leading out raise
:class:`~shoal.errors.PathOutsideWorkspace`.

Commands run with ``/workspace`` as the default working directory. ``exec`` blocks until the
command ends (or its timeout kills it) and streams output through ``on_output`` meanwhile;
background *sessions* are named long-running commands whose output accumulates for later reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from shoal.errors import Conflict, DependencyUnavailable, NotFound, PayloadTooLarge, ShoalError

WORKSPACE = "/workspace"
"""Where the workspace is mounted inside every sandbox."""

Network = Literal["none", "open"]
OutputCallback = Callable[[str, str], Awaitable[None]]
"""``await on_output(stream, text)`` with ``stream`` ``"stdout"`` or ``"stderr"``."""

TIMEOUT_EXIT_CODE = 124
"""Exit code reported for a command killed by its timeout (as ``timeout(1)`` does)."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class SandboxState(enum.StrEnum):
    STARTED = "started"
    STOPPED = "stopped"
    ERROR = "error"


# -- errors ------------------------------------------------------------------------------------


class SandboxNotFound(NotFound):
    def __init__(self, sandbox_id: str) -> None:
        super().__init__(f"Sandbox {sandbox_id!r} not found.")


class SandboxNotRunning(Conflict):
    """An operation needing a started sandbox (exec, sessions, ports) on a stopped one."""

    code = "sandbox_not_running"


class SandboxUnavailable(DependencyUnavailable):
    """The provider cannot run sandboxes here; the message names the fix."""

    code = "sandbox_unavailable"


class SandboxError(ShoalError):
    """The sandbox misbehaved (agent gone, start failed)."""

    status = 502
    code = "sandbox_error"


class SessionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No command session named {name!r}.")


class SessionExists(Conflict):
    code = "session_exists"


class WorkspaceFull(PayloadTooLarge):
    """The workspace size limit would be (or is) exceeded."""


class FileNotFoundInSandbox(NotFound):
    def __init__(self, path: str) -> None:
        super().__init__(f"No such file or directory: {path}")


def check_sandbox_id(sandbox_id: str) -> str:
    """Sandbox ids name directories and cgroups: letters, digits, ``-`` and ``_`` only."""
    if not _ID.match(sandbox_id):
        raise SandboxNotFound(sandbox_id)
    return sandbox_id


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """How to create a sandbox. ``image`` matters to image-based providers (Daytona) only."""

    network: Network = "none"
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    auto_stop_minutes: int | None = None


@dataclass(frozen=True, slots=True)
class SandboxInfo:
    sandbox_id: str
    state: SandboxState
    network: Network
    labels: Mapping[str, str]
    created_at: datetime
    provider: str


@dataclass(frozen=True, slots=True)
class ExecResult:
    """A finished command. ``timed_out`` commands were killed (exit code 124)."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        """stdout then stderr, for callers that do not care which is which."""
        if self.stdout and self.stderr:
            sep = "" if self.stdout.endswith("\n") else "\n"
            return f"{self.stdout}{sep}{self.stderr}"
        return self.stdout or self.stderr


MAX_CAPTURE = 4 * 1024 * 1024
"""Characters of stdout (and of stderr) an :class:`ExecResult` keeps (the newest ones);
``on_output`` still sees everything."""


class OutputCapture:
    """What every provider's ``exec`` does with output: pass each piece to ``on_output`` as it
    arrives and keep the newest :data:`MAX_CAPTURE` characters per stream for the result."""

    def __init__(self, on_output: OutputCallback | None) -> None:
        self.on_output = on_output
        self.started = time.monotonic()
        self._chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._sizes = {"stdout": 0, "stderr": 0}

    async def __call__(self, stream: str, text: str) -> None:
        stream = "stderr" if stream == "stderr" else "stdout"
        chunks = self._chunks[stream]
        chunks.append(text)
        self._sizes[stream] += len(text)
        while self._sizes[stream] > MAX_CAPTURE and len(chunks) > 1:
            self._sizes[stream] -= len(chunks.pop(0))
        if self.on_output is not None:
            await self.on_output(stream, text)

    def result(self, exit_code: int, *, timed_out: bool = False) -> ExecResult:
        return ExecResult(
            exit_code=exit_code,
            stdout="".join(self._chunks["stdout"]),
            stderr="".join(self._chunks["stderr"]),
            timed_out=timed_out,
            duration_seconds=round(time.monotonic() - self.started, 3),
        )


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A named background command. ``exit_code`` is ``None`` while it runs.

    ``started_at``/``ended_at`` (UTC) meter its sandbox time; ``None`` where the provider
    cannot say (a session started by another process of a provider that keeps no times)."""

    name: str
    command: str
    running: bool
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None

    def seconds(self, now: datetime) -> float | None:
        """How long it has run: to its end, or to ``now`` while it runs."""
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True, slots=True)
class SessionOutput:
    """All output a session produced so far (stdout and stderr interleaved as they arrived).

    Output beyond the provider's buffer keeps the newest part; ``truncated`` says so.
    """

    name: str
    output: str
    running: bool
    exit_code: int | None = None
    truncated: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def info(self) -> SessionInfo:
        return SessionInfo(
            self.name, "", self.running, self.exit_code, self.started_at, self.ended_at
        )


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One directory entry; ``path`` is always absolute (``/workspace/…``)."""

    name: str
    path: str
    is_dir: bool
    size: int
    mod_time: datetime


@dataclass(slots=True)
class PortConnection:
    """A raw TCP connection to ``localhost:port`` inside the sandbox."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@dataclass(frozen=True, slots=True)
class PreviewLink:
    """An HTTP(S) URL reaching ``localhost:port`` inside a sandbox, for providers without raw
    TCP (Daytona). Requests must carry ``headers`` (an access token); paths append to ``url``."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


# -- the protocol ------------------------------------------------------------------------------


@runtime_checkable
class SandboxProvider(Protocol):
    """Sandboxes by id. Lifecycle: ``create`` (stopped) → ``start`` ⇄ ``stop`` → ``delete``.

    ``exec``, sessions and ``open_port`` need a started sandbox (else
    :class:`SandboxNotRunning`); file operations work in either state.
    """

    name: str
    stops_on_close: bool
    """Whether :meth:`aclose` stops the sandboxes this object started (local ones live in this
    process; Daytona's run on until they auto-stop)."""

    async def create(
        self, spec: SandboxSpec | None = None, *, sandbox_id: str | None = None
    ) -> SandboxInfo: ...

    async def get(self, sandbox_id: str) -> SandboxInfo: ...

    async def start(self, sandbox_id: str) -> SandboxInfo: ...

    async def stop(self, sandbox_id: str) -> SandboxInfo: ...

    async def delete(self, sandbox_id: str) -> None: ...

    async def set_network(self, sandbox_id: str, network: Network) -> SandboxInfo:
        """Apply ``network`` from now on. A provider that cannot change the network of a running
        sandbox restarts it (its processes end; ``/workspace`` stays)."""
        ...

    async def exec(
        self,
        sandbox_id: str,
        command: str,
        *,
        cwd: str = WORKSPACE,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 300.0,  # noqa: ASYNC109 - enforced inside the sandbox
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Run ``command`` with ``bash -c``; stream output to ``on_output`` as it arrives."""
        ...

    async def start_session(
        self,
        sandbox_id: str,
        name: str,
        command: str,
        *,
        cwd: str = WORKSPACE,
        env: Mapping[str, str] | None = None,
    ) -> SessionInfo:
        """Start ``command`` in the background as session ``name``; a finished session of
        that name is replaced, a running one raises :class:`SessionExists`."""
        ...

    async def read_session(self, sandbox_id: str, name: str) -> SessionOutput: ...

    async def kill_session(self, sandbox_id: str, name: str) -> SessionInfo: ...

    async def list_sessions(self, sandbox_id: str) -> list[SessionInfo]: ...

    async def list_files(self, sandbox_id: str, path: str = WORKSPACE) -> list[FileEntry]: ...

    async def read_file(self, sandbox_id: str, path: str) -> bytes: ...

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> FileEntry:
        """Create or overwrite a file, creating parent directories."""
        ...

    async def delete_file(self, sandbox_id: str, path: str) -> None:
        """Delete a file, or a directory with everything in it."""
        ...

    async def open_port(self, sandbox_id: str, port: int) -> PortConnection:
        """Connect to ``localhost:port`` inside the sandbox (the port relay's transport)."""
        ...

    async def preview_link(self, sandbox_id: str, port: int) -> PreviewLink | None:
        """An HTTP link to ``port`` when the provider relays over HTTP (Daytona), else ``None``:
        the port relay then uses :meth:`open_port`."""
        ...

    async def aclose(self) -> None:
        """Release what this provider object holds (running local sandboxes stop)."""
        ...
