"""Commands on a Daytona sandbox: one-off ``exec`` and named background sessions.

Works on the SDK's ``sandbox.process`` object without importing ``daytona`` (only
:mod:`shoal.sandbox.daytona` does): requests are the toolbox client's own models, and every SDK
call runs inside ``errors()``, the provider's translation of SDK errors into shoal's.

* ``exec`` opens a one-off session (``shoal-exec-…``), sends the wrapped command with
  ``runAsync``, follows its output live over the toolbox's log websocket and deletes the session
  afterwards — which also kills a command whose timeout expired.
* A background session is a Daytona session of the same name holding one command. Daytona kills
  a command only by deleting its session, so :class:`Sessions` keeps what a killed session had
  printed (in memory, per provider object) until the sandbox stops or the name is reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any

from daytona_toolbox_api_client_async import SessionExecuteRequest

from shoal.errors import ShoalError
from shoal.kit.time import utcnow
from shoal.sandbox.base import (
    TIMEOUT_EXIT_CODE,
    OutputCallback,
    SandboxError,
    SandboxNotFound,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    SessionOutput,
)
from shoal.sandbox.daytona_wire import EXEC_SESSION_PREFIX, StreamDemux, unwrap_command

Errors = Callable[[], AbstractContextManager[None]]
SESSION_BUFFER = 1 << 20
"""Characters of session output kept (the newest), as the local provider does."""
KILLED_EXIT_CODE = 137


async def run_command(
    process: Any, errors: Errors, line: str, time_limit: float | None, deliver: OutputCallback
) -> tuple[int, bool]:
    """Run ``line`` to its end (or ``time_limit`` seconds): ``(exit code, timed out)``."""
    session_id = f"{EXEC_SESSION_PREFIX}{uuid.uuid4().hex[:16]}"
    with errors():
        await process.create_session(session_id)
    try:
        with errors():
            sent = await process.execute_session_command(
                session_id, SessionExecuteRequest(command=line, run_async=True)
            )
        try:
            await asyncio.wait_for(
                follow_logs(process, errors, session_id, sent.cmd_id, deliver), time_limit
            )
        except TimeoutError:
            return TIMEOUT_EXIT_CODE, True
        return await _exit_code(process, errors, session_id, sent.cmd_id), False
    finally:
        with contextlib.suppress(ShoalError), errors():  # deleting the session kills it
            await process.delete_session(session_id)


async def follow_logs(
    process: Any, errors: Errors, session_id: str, command_id: str, deliver: OutputCallback
) -> None:
    """Stream a session command's output to ``deliver`` until the command ends.

    Opens the log websocket exactly as the SDK does (its request serializer and pooled
    connection) but splits the stream with :class:`StreamDemux`, which passes every byte on as
    soon as it cannot be part of a marker — the SDK's splitter holds short lines back.
    """
    try:
        serialized = process._api_client._get_session_command_logs_serialize(
            session_id=session_id, command_id=command_id, follow=True, _request_auth=None,
            _content_type=None, _headers=None, _host_index=None,
        )  # fmt: skip
        open_ws = process._open_ws
    except AttributeError:  # the SDK changed its insides: its own splitter still works
        with errors():
            await process.get_session_command_logs_async(
                session_id,
                command_id,
                lambda text: deliver("stdout", text),
                lambda text: deliver("stderr", text),
            )
        return
    url, headers = serialized[1], serialized[2]
    try:
        with errors():
            ws = await open_ws(re.sub(r"^http", "ws", url), headers)
    except ShoalError:
        raise
    except Exception as exc:  # aiohttp's own errors: the toolbox is unreachable
        raise SandboxError(f"Daytona log stream unavailable: {exc}") from exc
    demux = StreamDemux()
    try:
        async for message in ws:
            data = message.data
            if isinstance(data, str):
                data = data.encode()
            if not isinstance(data, bytes):
                raise SandboxError(f"Daytona log stream failed: {ws.exception()}")
            for stream, text in demux.feed(data):
                await deliver(stream, text)
        if ws.close_code not in (None, 1000):
            raise SandboxError(f"Daytona log stream closed with code {ws.close_code}.")
    finally:
        await ws.close()
    for stream, text in demux.flush():
        await deliver(stream, text)


async def _exit_code(process: Any, errors: Errors, session_id: str, command_id: str) -> int:
    """The finished command's exit code (the log stream can end a moment before it is set)."""
    deadline = time.monotonic() + 10
    while True:
        with errors():
            command = await process.get_session_command(session_id, command_id)
        if command.exit_code is not None:
            return int(command.exit_code)
        if time.monotonic() > deadline:
            raise SandboxError("Daytona reported no exit code for a finished command.")
        await asyncio.sleep(0.05)


def _describe(name: str, commands: list[Any]) -> SessionInfo | None:
    """A Daytona session's last command as a :class:`SessionInfo` (our command, unwrapped)."""
    if not commands:
        return None
    last = commands[-1]
    unwrapped = unwrap_command(last.command)
    command = unwrapped[0] if unwrapped else last.command
    return SessionInfo(name, command, last.exit_code is None, last.exit_code)


class Sessions:
    """Named background commands, plus the memory of killed ones."""

    def __init__(self) -> None:
        self._killed: dict[tuple[str, str], tuple[str, SessionOutput]] = {}
        # Daytona keeps no times: when this process started a session, and first saw it ended.
        self._times: dict[tuple[str, str], tuple[datetime, datetime | None]] = {}

    def forget(self, sandbox_id: str) -> None:
        """The sandbox stopped: its processes, killed or not, are gone."""
        for key in [k for k in self._killed if k[0] == sandbox_id]:
            del self._killed[key]
        for key in [k for k in self._times if k[0] == sandbox_id]:
            del self._times[key]

    def _timed(self, sandbox_id: str, info: SessionInfo) -> SessionInfo:
        times = self._times.get((sandbox_id, info.name))
        if times is None:
            return info
        started, ended = times
        if ended is None and not info.running:
            ended = utcnow()
            self._times[(sandbox_id, info.name)] = (started, ended)
        return replace(info, started_at=started, ended_at=ended)

    async def _info(self, process: Any, errors: Errors, name: str) -> SessionInfo | None:
        try:
            with errors():
                session = await process.get_session(name)
        except SandboxNotFound:  # the API's 404, about the session here
            return None
        return _describe(name, session.commands)

    async def start(
        self, process: Any, errors: Errors, sandbox_id: str, name: str, command: str, line: str
    ) -> SessionInfo:
        current = await self._info(process, errors, name)
        with errors():
            if current is not None:
                if current.running:
                    raise SessionExists(f"session {name!r} is still running")
                await process.delete_session(name)
            self._killed.pop((sandbox_id, name), None)
            await process.create_session(name)
            request = SessionExecuteRequest(command=line, run_async=True)
            await process.execute_session_command(name, request)
        self._times[(sandbox_id, name)] = (utcnow(), None)
        return self._timed(sandbox_id, SessionInfo(name, command, True))

    async def read(self, process: Any, errors: Errors, sandbox_id: str, name: str) -> SessionOutput:
        info = await self._info(process, errors, name)
        if info is None:
            killed = self._killed.get((sandbox_id, name))
            if killed is None:
                raise SessionNotFound(name)
            return killed[1]
        with errors():
            session = await process.get_session(name)
            logs = await process.get_session_command_logs(name, session.commands[-1].id)
        output = logs.output or ""
        truncated = len(output) > SESSION_BUFFER
        info = self._timed(sandbox_id, info)
        return SessionOutput(
            name, output[-SESSION_BUFFER:], info.running, info.exit_code, truncated,
            info.started_at, info.ended_at,
        )  # fmt: skip

    async def kill(self, process: Any, errors: Errors, sandbox_id: str, name: str) -> SessionInfo:
        info = await self._info(process, errors, name)
        if info is None:
            killed = self._killed.get((sandbox_id, name))
            if killed is None:
                raise SessionNotFound(name)
            return replace(killed[1].info, command=killed[0])
        if not info.running:
            return self._timed(sandbox_id, info)
        output = await self.read(process, errors, sandbox_id, name)
        with errors():
            await process.delete_session(name)
        ended = self._timed(sandbox_id, replace(info, running=False, exit_code=KILLED_EXIT_CODE))
        last = SessionOutput(
            name, output.output, False, KILLED_EXIT_CODE, output.truncated,
            ended.started_at, ended.ended_at,
        )  # fmt: skip
        self._killed[(sandbox_id, name)] = (info.command, last)
        return ended

    async def list(self, process: Any, errors: Errors, sandbox_id: str) -> list[SessionInfo]:
        with errors():
            sessions = await process.list_sessions()
        found: dict[str, SessionInfo] = {}
        for session in sessions:
            if session.session_id.startswith(EXEC_SESSION_PREFIX):
                continue
            if (info := _describe(session.session_id, session.commands)) is not None:
                found[info.name] = self._timed(sandbox_id, info)
        for (owner, name), (command, killed) in self._killed.items():
            if owner == sandbox_id and name not in found:
                found[name] = replace(killed.info, command=command)
        return [found[name] for name in sorted(found)]
