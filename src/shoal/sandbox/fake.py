"""``ScriptedSandbox``: an in-memory provider for unit tests of tools and callers.

Files live in memory (same confinement rules as the real providers, symlinks included via
:meth:`ScriptedSandbox.add_symlink`). Commands are answered by scripts registered with
:meth:`ScriptedSandbox.on` (exact text or a regex, matched whole); without a script, a tiny shell
understands ``cmd; cmd`` sequences of ``echo … [>&2]``, ``printf``, ``exit N``, ``sleep N``,
``cat FILE``, ``pwd``, ``true``, ``false`` and ``$VARS``; anything else exits 127. Scripts may
stream output, sleep (timeouts apply), touch files and listen on ports::

    fake = ScriptedSandbox()
    fake.on("pytest -q", stdout="3 passed\\n")
    async def serve(ctx: ScriptContext) -> int:
        ctx.listen(8000, handler)          # open_port(…, 8000) reaches handler(reader, writer)
        await asyncio.Event().wait()       # runs until killed
        return 0
    fake.on(re.compile(r"python3 -m http.server.*"), serve)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import posixpath
import re
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shoal.errors import BadRequest
from shoal.kit.time import utcnow
from shoal.sandbox.base import (
    TIMEOUT_EXIT_CODE,
    WORKSPACE,
    ExecResult,
    FileEntry,
    FileNotFoundInSandbox,
    Network,
    OutputCallback,
    OutputCapture,
    PortConnection,
    PreviewLink,
    SandboxError,
    SandboxInfo,
    SandboxNotFound,
    SandboxNotRunning,
    SandboxSpec,
    SandboxState,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    SessionOutput,
    check_sandbox_id,
)
from shoal.sandbox.fake_shell import mini_shell
from shoal.sandbox.paths import follow_symlink, sandbox_path, workspace_parts

PortHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]
Script = Callable[["ScriptContext"], Coroutine[Any, Any, int | None]]


@dataclass(slots=True)
class ExecCall:
    sandbox_id: str
    command: str
    cwd: str
    env: dict[str, str]
    session: str | None = None


@dataclass(slots=True)
class ScriptContext:
    """What a script sees: the call, its sandbox and an output stream."""

    sandbox: ScriptedSandbox
    sandbox_id: str
    command: str
    cwd: str
    env: dict[str, str]
    emit: OutputCallback
    ports: list[int] = field(default_factory=list)

    async def read(self, path: str) -> bytes:
        return await self.sandbox.read_file(self.sandbox_id, self._abs(path))

    async def write(self, path: str, data: bytes) -> None:
        await self.sandbox.write_file(self.sandbox_id, self._abs(path), data)

    def listen(self, port: int, handler: PortHandler) -> None:
        """Serve ``port`` until the command ends (like a real server process would)."""
        self.sandbox._box(self.sandbox_id).ports[port] = handler
        self.ports.append(port)

    def _abs(self, path: str) -> str:
        return path if path.startswith("/") else posixpath.join(self.cwd, path)


@dataclass(slots=True)
class _Session:
    name: str
    command: str
    task: asyncio.Task[int | None] | None = None
    output: list[str] = field(default_factory=list)
    exit_code: int | None = None
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None

    def end(self, code: int | None) -> None:
        if self.ended_at is None:
            self.exit_code, self.ended_at = code, utcnow()


@dataclass(slots=True)
class _Box:
    info: SandboxInfo
    env: dict[str, str]
    files: dict[tuple[str, ...], bytes] = field(default_factory=dict)
    dirs: set[tuple[str, ...]] = field(default_factory=set)
    links: dict[tuple[str, ...], str] = field(default_factory=dict)
    mtimes: dict[tuple[str, ...], float] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)
    ports: dict[int, PortHandler] = field(default_factory=dict)


class ScriptedSandbox:
    name = "fake"
    stops_on_close = True

    def __init__(self) -> None:
        self._boxes: dict[str, _Box] = {}
        self._scripts: list[tuple[str | re.Pattern[str], Script]] = []
        self.calls: list[ExecCall] = []

    # -- scripting -----------------------------------------------------------------------------

    def on(
        self,
        pattern: str | re.Pattern[str],
        script: Script | None = None,
        *,
        stdout: str = "",
        stderr: str = "",
        exit_code: int = 0,
        delay: float = 0.0,
    ) -> None:
        """Answer commands matching ``pattern`` with ``script`` or with canned output."""

        async def canned(ctx: ScriptContext) -> int:
            if stdout:
                await ctx.emit("stdout", stdout)
            if delay:
                await asyncio.sleep(delay)
            if stderr:
                await ctx.emit("stderr", stderr)
            return exit_code

        self._scripts.insert(0, (pattern, script or canned))

    def add_symlink(self, sandbox_id: str, path: str, target: str) -> None:
        self._box(sandbox_id).links[workspace_parts(path)] = target

    def _script_for(self, command: str) -> Script:
        for pattern, script in self._scripts:
            if (pattern == command) if isinstance(pattern, str) else pattern.fullmatch(command):
                return script
        return mini_shell

    async def _call(self, ctx: ScriptContext) -> int:
        try:
            return await self._script_for(ctx.command)(ctx) or 0
        finally:
            box = self._boxes.get(ctx.sandbox_id)
            if box is not None:
                for port in ctx.ports:
                    box.ports.pop(port, None)

    # -- lifecycle -----------------------------------------------------------------------------

    def _box(self, sandbox_id: str) -> _Box:
        box = self._boxes.get(sandbox_id)
        if box is None:
            raise SandboxNotFound(sandbox_id)
        return box

    def _running(self, sandbox_id: str) -> _Box:
        box = self._box(sandbox_id)
        if box.info.state is not SandboxState.STARTED:
            raise SandboxNotRunning("The sandbox is not running.")
        return box

    def _set_state(self, box: _Box, state: SandboxState) -> SandboxInfo:
        i = box.info
        box.info = SandboxInfo(i.sandbox_id, state, i.network, i.labels, i.created_at, i.provider)
        return box.info

    async def create(
        self, spec: SandboxSpec | None = None, *, sandbox_id: str | None = None
    ) -> SandboxInfo:
        spec = spec or SandboxSpec()
        sandbox_id = check_sandbox_id(sandbox_id or f"fake{len(self._boxes) + 1}")
        if sandbox_id not in self._boxes:
            info = SandboxInfo(
                sandbox_id, SandboxState.STOPPED, spec.network, dict(spec.labels), utcnow(),
                self.name,
            )  # fmt: skip
            self._boxes[sandbox_id] = _Box(info, dict(spec.env))
        return self._boxes[sandbox_id].info

    async def get(self, sandbox_id: str) -> SandboxInfo:
        return self._box(sandbox_id).info

    async def start(self, sandbox_id: str) -> SandboxInfo:
        return self._set_state(self._box(sandbox_id), SandboxState.STARTED)

    async def stop(self, sandbox_id: str) -> SandboxInfo:
        box = self._box(sandbox_id)
        for session in box.sessions.values():
            if session.task is not None:
                session.task.cancel()
        box.sessions.clear()
        box.ports.clear()
        return self._set_state(box, SandboxState.STOPPED)

    async def delete(self, sandbox_id: str) -> None:
        await self.stop(sandbox_id)
        del self._boxes[sandbox_id]

    async def set_network(self, sandbox_id: str, network: Network) -> SandboxInfo:
        box = self._box(sandbox_id)  # applied at once, like Daytona's network settings
        box.info = dataclasses.replace(box.info, network=network)
        return box.info

    async def aclose(self) -> None:
        for sandbox_id in list(self._boxes):
            await self.stop(sandbox_id)

    # -- commands ------------------------------------------------------------------------------

    def _context(
        self, sandbox_id: str, command: str, cwd: str, env: Mapping[str, str] | None,
        emit: OutputCallback,
    ) -> ScriptContext:  # fmt: skip
        box = self._running(sandbox_id)
        return ScriptContext(self, sandbox_id, command, cwd, {**box.env, **(env or {})}, emit)

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
        capture = OutputCapture(on_output)
        ctx = self._context(sandbox_id, command, cwd, env, capture)
        self.calls.append(ExecCall(sandbox_id, command, cwd, dict(ctx.env)))
        try:
            code = await asyncio.wait_for(self._call(ctx), timeout)
        except TimeoutError:
            return capture.result(TIMEOUT_EXIT_CODE, timed_out=True)
        return capture.result(code)

    async def start_session(
        self,
        sandbox_id: str,
        name: str,
        command: str,
        *,
        cwd: str = WORKSPACE,
        env: Mapping[str, str] | None = None,
    ) -> SessionInfo:
        box = self._running(sandbox_id)
        current = box.sessions.get(name)
        if current is not None and current.exit_code is None:
            raise SessionExists(f"session {name!r} is still running")
        session = _Session(name, command)

        async def emit(stream: str, text: str) -> None:
            session.output.append(text)

        ctx = self._context(sandbox_id, command, cwd, env, emit)
        self.calls.append(ExecCall(sandbox_id, command, cwd, dict(ctx.env), session=name))

        async def run() -> int | None:
            session.end(await self._call(ctx))
            return session.exit_code

        session.task = asyncio.create_task(run())
        box.sessions[name] = session
        await asyncio.sleep(0)
        return _info(session)

    def _session(self, sandbox_id: str, name: str) -> _Session:
        session = self._running(sandbox_id).sessions.get(name)
        if session is None:
            raise SessionNotFound(name)
        return session

    async def read_session(self, sandbox_id: str, name: str) -> SessionOutput:
        session = self._session(sandbox_id, name)
        info = _info(session)
        return SessionOutput(
            name, "".join(session.output), info.running, info.exit_code, False,
            info.started_at, info.ended_at,
        )  # fmt: skip

    async def kill_session(self, sandbox_id: str, name: str) -> SessionInfo:
        session = self._session(sandbox_id, name)
        if session.task is not None and session.exit_code is None:
            session.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session.task
            session.end(137)
        return _info(session)

    async def list_sessions(self, sandbox_id: str) -> list[SessionInfo]:
        return [_info(s) for s in self._running(sandbox_id).sessions.values()]

    async def open_port(self, sandbox_id: str, port: int) -> PortConnection:
        handler = self._running(sandbox_id).ports.get(port)
        if handler is None:
            raise SandboxError(f"nothing listens on port {port}")
        near, far = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=near)
        far_reader, far_writer = await asyncio.open_connection(sock=far)
        asyncio.get_running_loop().create_task(handler(far_reader, far_writer))
        return PortConnection(reader, writer)

    async def preview_link(self, sandbox_id: str, port: int) -> PreviewLink | None:
        return None  # the relay dials the port itself (open_port)

    # -- files ---------------------------------------------------------------------------------

    def _resolve(self, box: _Box, path: str, *, follow_last: bool = True) -> tuple[str, ...]:
        parts = list(workspace_parts(path))
        for _hop in range(40):
            for index in range(len(parts)):
                key = tuple(parts[: index + 1])
                last = index == len(parts) - 1
                if key in box.links and (follow_last or not last):
                    parts = follow_symlink(parts[:index], box.links[key], parts[index + 1 :])
                    break
            else:
                return tuple(parts)
        raise BadRequest(f"Too many levels of symbolic links: {path}")

    async def list_files(self, sandbox_id: str, path: str = WORKSPACE) -> list[FileEntry]:
        box = self._box(sandbox_id)
        base = self._resolve(box, path)
        if base and base not in box.dirs:
            raise FileNotFoundInSandbox(sandbox_path(base))
        depth = len(base)
        every = [*box.files, *box.dirs, *box.links]
        names = {p[depth] for p in every if len(p) > depth and p[:depth] == base}
        entries = [self._entry(box, (*base, name)) for name in names]
        return sorted(entries, key=lambda e: (not e.is_dir, e.name))

    def _entry(self, box: _Box, parts: tuple[str, ...]) -> FileEntry:
        is_dir = parts in box.dirs or any(p[: len(parts)] == parts for p in box.files if p != parts)
        size = 0 if is_dir else len(box.files.get(parts, b""))
        when = box.mtimes.get(parts, box.info.created_at.timestamp())
        mod_time = box.info.created_at.fromtimestamp(when, tz=box.info.created_at.tzinfo)
        return FileEntry(parts[-1], sandbox_path(parts), is_dir, size, mod_time)

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        box = self._box(sandbox_id)
        parts = self._resolve(box, path)
        if parts not in box.files:
            if not parts or parts in box.dirs:
                raise BadRequest(f"{sandbox_path(parts)} is a directory.")
            raise FileNotFoundInSandbox(sandbox_path(parts))
        return box.files[parts]

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> FileEntry:
        box = self._box(sandbox_id)
        parts = self._resolve(box, path)
        if not parts or parts in box.dirs:
            raise BadRequest(f"{sandbox_path(parts)} is a directory.")
        for depth in range(1, len(parts)):
            if parts[:depth] in box.files:
                raise BadRequest(f"Not a directory: {sandbox_path(parts[:depth])}")
            box.dirs.add(parts[:depth])
        box.files[parts] = bytes(data)
        box.mtimes[parts] = time.time()
        return self._entry(box, parts)

    async def delete_file(self, sandbox_id: str, path: str) -> None:
        box = self._box(sandbox_id)
        parts = self._resolve(box, path, follow_last=False)
        if not parts:
            raise BadRequest(f"Refusing to delete {WORKSPACE} itself.")
        if parts in box.links:
            del box.links[parts]
            return
        doomed = [p for p in [*box.files, *box.dirs] if p[: len(parts)] == parts]
        if not doomed:
            raise FileNotFoundInSandbox(sandbox_path(parts))
        for p in doomed:
            box.files.pop(p, None)
            box.dirs.discard(p)


def _info(session: _Session) -> SessionInfo:
    running = session.exit_code is None and session.task is not None and not session.task.done()
    if not running:
        session.end(session.exit_code)  # a script that ended without an exit code
    code = session.exit_code if not running else None
    return SessionInfo(
        session.name, session.command, running, code, session.started_at, session.ended_at
    )
