"""Commands in the project sandbox: ``execute_command``, its background sessions, ports.

A blocking command streams its output live (``tool_output_delta`` events) and returns the
newest part of it with the exit code; its seconds go to the usage ledger even when it fails,
times out or the run is stopped. Stopping the run cancels the call: the provider kills the
command when the exec connection drops. Long-running commands (servers, watchers) run in named
background sessions instead, read with ``check_command_output`` and stopped with
``terminate_command``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from typing import Annotated

from pydantic import Field

from shoal.errors import ShoalError
from shoal.sandbox.base import ExecResult, SessionExists, SessionNotFound, SessionOutput
from shoal.tools.base import OutputEmitter, Tool, ToolContext, ToolResult, tool_function
from shoal.tools.sandbox_access import (
    SandboxAccess,
    ToolFailure,
    keep_tail,
    meter_exec,
    meter_sessions,
    open_sandbox,
    reports_failures,
    workspace_path,
)

_SESSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_POLL_SECONDS = 0.1
_PORT_CHECK_SECONDS = 3.0
_LONG_RUNNING_HINT = (
    "For servers and other long-running commands pass session_name to run them in the background."
)


class _Capture:
    """Output as it arrives: the newest part for the model, a bounded live stream for users."""

    def __init__(self, emit: OutputEmitter, keep_chars: int, live_chars: int) -> None:
        self.emit = emit
        self.keep_chars = keep_chars
        self.live_left = live_chars
        self.chunks: list[str] = []
        self.kept = 0
        self.total = 0
        self.live_cut = False

    async def __call__(self, stream: str, text: str) -> None:
        self.chunks.append(text)
        self.kept += len(text)
        self.total += len(text)
        while self.kept - len(self.chunks[0]) >= self.keep_chars and len(self.chunks) > 1:
            self.kept -= len(self.chunks.pop(0))
        if self.live_left > 0:
            piece = text[: self.live_left]
            self.live_left -= len(piece)
            await self.emit(stream, piece)
        elif not self.live_cut:
            self.live_cut = True
            await self.emit("stderr", "\n[live output stops here; the result has the end]\n")

    def text(self, fallback: ExecResult) -> tuple[str, int]:
        if not self.total:  # a provider that did not stream: use what it returned
            return keep_tail(fallback.output, self.keep_chars)
        return keep_tail("".join(self.chunks), self.keep_chars, dropped=self.total - self.kept)


class ShellTool(Tool):
    """``execute_command`` and friends, against ``ctx.sandbox`` (a :class:`SandboxAccess`)."""

    def __init__(
        self,
        *,
        default_timeout: int = 60,
        max_timeout: int = 1800,
        output_max_chars: int = 20_000,
        live_output_max_chars: int = 1_000_000,
        session_wait_seconds: float = 1.0,
    ) -> None:
        self.max_timeout = max_timeout
        self.default_timeout = min(default_timeout, max_timeout)
        self.output_max_chars = output_max_chars
        self.live_output_max_chars = live_output_max_chars
        self.session_wait_seconds = session_wait_seconds

    @tool_function
    @reports_failures
    async def execute_command(
        self,
        ctx: ToolContext,
        command: str,
        folder: str | None = None,
        session_name: str | None = None,
        blocking: bool | None = None,
        timeout: Annotated[int, Field(ge=1)] | None = None,  # noqa: ASYNC109 - the sandbox's
    ) -> ToolResult:
        """Run a bash command in the sandbox (working directory /workspace unless `folder`).

        By default it waits for the command to finish, killing it after `timeout` seconds,
        and returns the end of its output and its exit code. For servers, watchers and other
        long-running commands pass `session_name`: the command then starts in a named
        background session and this returns at once with its first output (read more with
        check_command_output, stop it with terminate_command).

        Args:
            command: the command line, run with bash
            folder: working directory, relative to /workspace (default /workspace)
            session_name: run in the background under this name (letters, digits, - _ .)
            blocking: wait for the command to finish (default: true without session_name)
            timeout: seconds before a blocking command is killed (default 60)
        """
        if not command.strip():
            raise ToolFailure("The command is empty.")
        cwd = workspace_path(folder or ".")
        background = blocking is False or (session_name is not None and blocking is not True)
        if background:
            name = _session_name(session_name) if session_name else f"cmd-{secrets.token_hex(3)}"
            box, sandbox_id = await open_sandbox(ctx)
            return await self._start_session(box, sandbox_id, name, command, cwd)
        limit = self.default_timeout if timeout is None else timeout
        if limit > self.max_timeout:
            raise ToolFailure(
                f"timeout may be at most {self.max_timeout} seconds. {_LONG_RUNNING_HINT}"
            )
        box, sandbox_id = await open_sandbox(ctx)
        return await self._run(ctx, box, sandbox_id, command, cwd, limit)

    async def _run(
        self,
        ctx: ToolContext,
        box: SandboxAccess,
        sandbox_id: str,
        command: str,
        cwd: str,
        timeout: int,  # noqa: ASYNC109 - enforced inside the sandbox
    ) -> ToolResult:
        capture = _Capture(ctx.emit_output, self.output_max_chars, self.live_output_max_chars)
        started = time.monotonic()
        try:
            result = await box.provider.exec(
                sandbox_id, command, cwd=cwd, timeout=timeout, on_output=capture
            )
        finally:  # also when the command failed to start or the run was stopped
            await meter_exec(box, time.monotonic() - started)
        text, omitted = capture.text(result)
        meta = {
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "cwd": cwd,
            "duration_seconds": round(time.monotonic() - started, 3),
            "output_omitted_chars": omitted,
        }
        body = text if text.strip() else "(no output)"
        if not body.endswith("\n"):
            body += "\n"
        if result.timed_out:
            return ToolResult.fail(
                f"{body}[timed out after {timeout} s: the command was killed "
                f"(exit code {result.exit_code}). {_LONG_RUNNING_HINT}]",
                **meta,
            )
        footer = f"[exit code {result.exit_code}]"
        if result.exit_code != 0:
            return ToolResult.fail(body + footer, **meta)
        return ToolResult.ok(body + footer, **meta)

    async def _start_session(
        self, box: SandboxAccess, sandbox_id: str, name: str, command: str, cwd: str
    ) -> ToolResult:
        try:
            await box.provider.start_session(sandbox_id, name, command, cwd=cwd)
        except SessionExists:
            raise ToolFailure(
                f"A command is still running in session {name!r}. Read it with "
                "check_command_output, stop it with terminate_command, or pick another "
                "session_name."
            ) from None
        deadline = time.monotonic() + self.session_wait_seconds
        output = await box.provider.read_session(sandbox_id, name)
        while output.running and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
            output = await box.provider.read_session(sandbox_id, name)
        await meter_sessions(box, [output.info])  # it may have finished already
        intro = f"Started in background session {name!r}: {command}\n"
        return self._session_result(output, intro, command=command, cwd=cwd)

    def _session_result(self, output: SessionOutput, intro: str, **extra: str) -> ToolResult:
        text, omitted = keep_tail(output.output, self.output_max_chars)
        if output.truncated and not omitted:
            text = "[… earlier output was dropped by the sandbox …]\n" + text
        if output.running:
            status = (
                f"[still running — check_command_output(session_name={output.name!r}) "
                "for more output]"
            )
        else:
            status = f"[finished, exit code {output.exit_code}]"
        body = text if text.strip() else "(no output yet)" if output.running else "(no output)"
        message = f"{intro}{body.rstrip(chr(10))}\n{status}"
        meta = {
            "session_name": output.name,
            "running": output.running,
            "exit_code": output.exit_code,
            **extra,
        }
        failed = not output.running and output.exit_code not in (0, None)
        return ToolResult.fail(message, **meta) if failed else ToolResult.ok(message, **meta)

    @tool_function
    @reports_failures
    async def check_command_output(self, ctx: ToolContext, session_name: str) -> ToolResult:
        """Read the output so far of a background command session, and whether it still runs.

        Args:
            session_name: the session's name (see list_commands)
        """
        box, sandbox_id = await open_sandbox(ctx)
        try:
            output = await box.provider.read_session(sandbox_id, session_name)
        except SessionNotFound:
            raise ToolFailure(await _unknown_session(box, sandbox_id, session_name)) from None
        await meter_sessions(box, [output.info])
        result = self._session_result(output, f"Session {session_name!r}:\n")
        result.success = True  # reading worked; the status line says how the command ended
        return result

    @tool_function
    @reports_failures
    async def terminate_command(self, ctx: ToolContext, session_name: str) -> ToolResult:
        """Stop a background command session (its whole process tree is killed).

        Args:
            session_name: the session's name (see list_commands)
        """
        box, sandbox_id = await open_sandbox(ctx)
        try:
            before = await box.provider.read_session(sandbox_id, session_name)
            info = await box.provider.kill_session(sandbox_id, session_name)
        except SessionNotFound:
            raise ToolFailure(await _unknown_session(box, sandbox_id, session_name)) from None
        await meter_sessions(box, [info])
        tail, _ = keep_tail(before.output, min(self.output_max_chars, 2000))
        last = f"\nLast output:\n{tail.rstrip()}" if tail.strip() else ""
        if not before.running:
            message = f"Session {session_name!r} had already finished (exit code "
            message += f"{info.exit_code}).{last}"
        else:
            message = f"Terminated session {session_name!r}.{last}"
        return ToolResult.ok(message, session_name=session_name, exit_code=info.exit_code)

    @tool_function
    @reports_failures
    async def list_commands(self, ctx: ToolContext) -> ToolResult:
        """List the background command sessions of the sandbox and their status."""
        box, sandbox_id = await open_sandbox(ctx)
        sessions = await box.provider.list_sessions(sandbox_id)
        await meter_sessions(box, sessions)
        if not sessions:
            return ToolResult.ok("No command sessions.", sessions=[])
        lines = []
        for info in sessions:
            state = "running" if info.running else f"finished (exit code {info.exit_code})"
            lines.append(f"- {info.name}: {state} — {info.command}")
        names = [info.name for info in sessions]
        return ToolResult.ok("Command sessions:\n" + "\n".join(lines), sessions=names)

    @tool_function
    @reports_failures
    async def expose_port(
        self, ctx: ToolContext, port: Annotated[int, Field(ge=1, le=65535)]
    ) -> ToolResult:
        """Get the public URL of a port a server listens on inside the sandbox, to share it.

        Args:
            port: the TCP port on localhost inside the sandbox (1-65535)
        """
        box, sandbox_id = await open_sandbox(ctx)
        url = box.port_url(port)
        listening = await _listening(box, sandbox_id, port)
        message = f"Port {port} is available at {url}"
        if not listening:
            message += (
                f"\nNote: nothing listens on port {port} yet. Start the server (e.g. "
                "execute_command with a session_name); the URL works once it does."
            )
        return ToolResult.ok(message, url=url, port=port, listening=listening)


def _session_name(name: str) -> str:
    name = name.strip()
    if not _SESSION_NAME.match(name):
        raise ToolFailure(
            f"Invalid session_name {name!r}: use up to 64 letters, digits, '-', '_' or '.'."
        )
    return name


async def _unknown_session(box: SandboxAccess, sandbox_id: str, name: str) -> str:
    sessions = await box.provider.list_sessions(sandbox_id)
    known = ", ".join(repr(s.name) for s in sessions) or "none"
    return f"No command session named {name!r}. Sessions: {known}."


async def _listening(box: SandboxAccess, sandbox_id: str, port: int) -> bool:
    try:
        async with asyncio.timeout(_PORT_CHECK_SECONDS):
            connection = await box.provider.open_port(sandbox_id, port)
    except (ShoalError, OSError, TimeoutError):
        return False
    with contextlib.suppress(Exception):
        await connection.aclose()
    return True
