"""The host side of the exec agent's protocol (see :mod:`shoal.sandbox.agent`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shoal.errors import BadRequest
from shoal.sandbox.base import (
    TIMEOUT_EXIT_CODE,
    ExecResult,
    OutputCallback,
    OutputCapture,
    PortConnection,
    SandboxError,
    SandboxNotRunning,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    SessionOutput,
)

_LINE_LIMIT = 16 * 1024 * 1024
_GRACE = 10.0  # seconds past a command's timeout before the host gives up on the agent


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    """``path`` as ``/proc/self/fd/N/name``: unix socket paths must fit in 108 bytes."""
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def listen(path: Path) -> socket.socket:
    """A listening unix socket at ``path`` (replacing a stale one)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with short_path(path) as short:
        sock.bind(short)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


class AgentClient:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            with short_path(self.socket_path) as short:
                return await asyncio.open_unix_connection(short, limit=_LINE_LIMIT)
        except (FileNotFoundError, ConnectionRefusedError):
            raise SandboxNotRunning("The sandbox is not running.") from None

    async def request(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        reader, writer = await self._open()
        try:
            writer.write(json.dumps(payload).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout=30)
        finally:
            writer.close()
        return _checked(_decode(line), name=str(payload.get("name", "")))

    async def ping(self) -> bool:
        try:
            return bool((await self.request({"op": "ping"})).get("ok"))
        except (SandboxNotRunning, SandboxError, OSError, TimeoutError):
            return False

    async def exec(
        self,
        command: str,
        *,
        cwd: str,
        env: Mapping[str, str] | None,
        timeout: float | None,  # noqa: ASYNC109 - the agent enforces it
        cpu_seconds: int | None,
        on_output: OutputCallback | None,
    ) -> ExecResult:
        capture = OutputCapture(on_output)
        reader, writer = await self._open()
        payload: dict[str, Any] = {"op": "exec", "command": command, "cwd": cwd}
        payload.update(env=dict(env or {}), timeout=timeout, cpu_seconds=cpu_seconds)
        deadline = None if timeout is None else capture.started + timeout + _GRACE
        try:
            writer.write(json.dumps(payload).encode() + b"\n")
            await writer.drain()
            while True:
                left = None if deadline is None else max(0.1, deadline - time.monotonic())
                try:
                    frame = _decode(await asyncio.wait_for(reader.readline(), timeout=left))
                except TimeoutError:  # the agent is stuck: hanging up makes it kill the command
                    return capture.result(TIMEOUT_EXIT_CODE, timed_out=True)
                if frame.get("type") == "out":
                    await capture(str(frame.get("stream")), str(frame.get("text", "")))
                elif frame.get("type") == "exit":
                    code, timed_out = int(frame["exit_code"]), bool(frame.get("timed_out"))
                    return capture.result(code, timed_out=timed_out)
                else:
                    _checked(frame)
        finally:
            writer.close()

    async def start_session(
        self, name: str, command: str, *, cwd: str, env: Mapping[str, str] | None
    ) -> SessionInfo:
        payload = {"op": "session_start", "name": name, "command": command, "cwd": cwd}
        response = await self.request({**payload, "env": dict(env or {})})
        return _session(response["session"])

    async def read_session(self, name: str) -> SessionOutput:
        response = await self.request({"op": "session_read", "name": name})
        info = _session(response["session"])
        return SessionOutput(
            name=info.name,
            output=str(response.get("output", "")),
            running=info.running,
            exit_code=info.exit_code,
            truncated=bool(response.get("truncated")),
            started_at=info.started_at,
            ended_at=info.ended_at,
        )

    async def kill_session(self, name: str) -> SessionInfo:
        return _session((await self.request({"op": "session_kill", "name": name}))["session"])

    async def list_sessions(self) -> list[SessionInfo]:
        response = await self.request({"op": "session_list"})
        return [_session(item) for item in response.get("sessions", [])]

    async def connect(self, port: int) -> PortConnection:
        if not 1 <= port <= 65535:
            raise BadRequest(f"Invalid port {port}.")
        reader, writer = await self._open()
        try:
            writer.write(json.dumps({"op": "connect", "port": port}).encode() + b"\n")
            await writer.drain()
            _checked(_decode(await asyncio.wait_for(reader.readline(), timeout=30)))
        except BaseException:
            writer.close()
            raise
        return PortConnection(reader, writer)


def _decode(line: bytes) -> dict[str, Any]:
    if not line:
        raise SandboxError("The sandbox agent closed the connection (did the sandbox stop?).")
    try:
        frame = json.loads(line)
    except ValueError:
        raise SandboxError("The sandbox agent sent garbage.") from None
    if not isinstance(frame, dict):
        raise SandboxError("The sandbox agent sent garbage.")
    return frame


def _checked(frame: dict[str, Any], *, name: str = "") -> dict[str, Any]:
    if frame.get("ok", True) is not False:
        return frame
    code, message = str(frame.get("error")), str(frame.get("message", "sandbox agent error"))
    if code == "session_not_found":
        raise SessionNotFound(name)
    if code == "session_exists":
        raise SessionExists(message)
    if code == "port_closed":
        raise SandboxError(message)
    if code in ("bad_cwd", "bad_request"):
        raise BadRequest(message)
    raise SandboxError(message)


def _session(data: Mapping[str, Any]) -> SessionInfo:
    code = data.get("exit_code")
    return SessionInfo(
        name=str(data["name"]),
        command=str(data.get("command", "")),
        running=bool(data.get("running")),
        exit_code=None if code is None else int(code),
        started_at=_when(data.get("started_at")),
        ended_at=_when(data.get("ended_at")),
    )


def _when(stamp: Any) -> datetime | None:
    """An agent's epoch seconds (absent from agents started before they were reported)."""
    return None if stamp is None else datetime.fromtimestamp(float(stamp), UTC)
