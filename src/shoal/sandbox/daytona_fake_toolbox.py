"""The toolbox half of :class:`~shoal.sandbox.daytona_fake.FakeDaytona`: process sessions and
files, served under ``/toolbox/{sandboxId}`` as the SDK's toolbox proxy URL points it there.

Bodies are checked with the SDK's generated toolbox models and answers built from them, so
the SDK parses exactly what the real daemon would send. Commands run on a
:class:`~shoal.sandbox.fake.ScriptedSandbox`; a command the provider wrapped
(:func:`~shoal.sandbox.daytona_wire.wrap_command`) runs unwrapped with its cwd and env.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from daytona_toolbox_api_client import (
    Command,
    CreateSessionRequest,
    FileInfo,
    FilesDownloadRequest,
    Session,
    SessionCommandLogsResponse,
    SessionExecuteRequest,
    SessionExecuteResponse,
)
from starlette.datastructures import UploadFile
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from shoal.errors import NotFound, PathOutsideWorkspace, ShoalError
from shoal.sandbox.base import WORKSPACE, FileEntry
from shoal.sandbox.daytona_wire import STDERR_MARKER, STDOUT_MARKER, unwrap_command
from shoal.sandbox.paths import workspace_parts

if TYPE_CHECKING:
    from shoal.sandbox.daytona_fake import FakeDaytona, FakeSandbox

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(slots=True)
class FakeCommand:
    id: str
    command: str
    chunks: list[tuple[str, str]] = field(default_factory=list)
    exit_code: int | None = None
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, stream: str, text: str) -> None:
        self.chunks.append((stream, text))
        self.changed.set()

    def finish(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
        self.changed.set()

    def text(self, stream: str | None = None) -> str:
        return "".join(t for s, t in self.chunks if stream in (None, s))

    def model(self) -> Command:
        return Command(id=self.id, command=self.command, exit_code=self.exit_code)


@dataclass(slots=True)
class FakeSession:
    id: str
    commands: list[FakeCommand] = field(default_factory=list)

    def model(self) -> Session:
        return Session(session_id=self.id, commands=[c.model() for c in self.commands])

    def kill(self) -> None:
        for command in self.commands:
            if command.task is not None and not command.task.done():
                command.task.cancel()
            command.finish(137)


class ToolboxError(Exception):
    """An error answer in the daemon's ``ErrorResponse`` shape."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def error_response(status: int, message: str, code: str | None = None, path: str = "") -> Response:
    body: dict[str, Any] = {"message": message, "statusCode": status, "path": path,
                            "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    if code:
        body |= {"code": code, "source": "DAYTONA_DAEMON"}
    return JSONResponse(body, status_code=status)


class Toolbox:
    def __init__(self, server: FakeDaytona) -> None:
        self.server = server
        self._ids = itertools.count(1)

    def routes(self) -> list[BaseRoute]:
        base = "/toolbox/{sandbox_id}"
        session = base + "/process/session/{session_id}"
        return [
            Route(base + "/process/session", self._guard(self.create_session), methods=["POST"]),
            Route(base + "/process/session", self._guard(self.list_sessions), methods=["GET"]),
            Route(session, self._guard(self.get_session), methods=["GET"]),
            Route(session, self._guard(self.delete_session), methods=["DELETE"]),
            Route(session + "/exec", self._guard(self.execute), methods=["POST"]),
            Route(session + "/command/{command_id}", self._guard(self.get_command)),
            Route(session + "/command/{command_id}/logs", self._guard(self.get_logs)),
            WebSocketRoute(session + "/command/{command_id}/logs", self.follow_logs),
            Route(base + "/files", self._guard(self.list_files), methods=["GET"]),
            Route(base + "/files", self._guard(self.delete_file), methods=["DELETE"]),
            Route(base + "/files/folder", self._guard(self.create_folder), methods=["POST"]),
            Route(base + "/files/bulk-upload", self._guard(self.upload), methods=["POST"]),
            Route(base + "/files/bulk-download", self._guard(self.download), methods=["POST"]),
        ]

    def _guard(self, handler: Handler) -> Handler:
        """Auth, a started sandbox, and errors rendered as the daemon renders them."""

        async def guarded(request: Request) -> Response:
            try:
                self.server.check_auth(request.headers.get("authorization"))
                box = self.server.find(request.path_params["sandbox_id"])
                if box.state != "started":
                    raise ToolboxError(409, "Sandbox is not started")
                return await handler(request)
            except ToolboxError as exc:
                return error_response(exc.status, exc.message, exc.code, request.url.path)
            except PathOutsideWorkspace as exc:
                return error_response(403, exc.message, "FILE_ACCESS_DENIED", request.url.path)
            except NotFound as exc:
                return error_response(404, exc.message, "FILE_NOT_FOUND", request.url.path)
            except ShoalError as exc:
                return error_response(400, exc.message, None, request.url.path)

        return guarded

    # -- sessions ------------------------------------------------------------------------------

    def _box(self, request: HTTPConnection) -> FakeSandbox:
        return self.server.find(request.path_params["sandbox_id"])

    def _session(self, request: HTTPConnection) -> FakeSession:
        session = self._box(request).sessions.get(request.path_params["session_id"])
        if session is None:
            raise ToolboxError(404, "session not found")
        return session

    def _command(self, request: HTTPConnection) -> FakeCommand:
        wanted = request.path_params["command_id"]
        for command in self._session(request).commands:
            if command.id == wanted:
                return command
        raise ToolboxError(404, "command not found")

    async def create_session(self, request: Request) -> Response:
        body = await self.server.validated(request, CreateSessionRequest)
        box = self._box(request)
        if body.session_id in box.sessions:
            raise ToolboxError(409, f"session {body.session_id} already exists")
        box.sessions[body.session_id] = FakeSession(body.session_id)
        return Response(status_code=201)

    async def list_sessions(self, request: Request) -> Response:
        sessions = self._box(request).sessions.values()
        return JSONResponse([s.model().to_dict() for s in sessions])

    async def get_session(self, request: Request) -> Response:
        return JSONResponse(self._session(request).model().to_dict())

    async def delete_session(self, request: Request) -> Response:
        session = self._session(request)
        session.kill()
        del self._box(request).sessions[session.id]
        return Response(status_code=204)

    async def execute(self, request: Request) -> Response:
        body = await self.server.validated(request, SessionExecuteRequest)
        box, session = self._box(request), self._session(request)
        command = FakeCommand(f"cmd-{next(self._ids)}", body.command)
        session.commands.append(command)
        command.task = asyncio.get_running_loop().create_task(self._run(box, command))
        if body.run_async or body.var_async:
            answer = SessionExecuteResponse(cmd_id=command.id)
            return JSONResponse(answer.to_dict(), status_code=202)
        await asyncio.wait({command.task})
        answer = SessionExecuteResponse(
            cmd_id=command.id, exit_code=command.exit_code, output=command.text(),
            stdout=command.text("stdout"), stderr=command.text("stderr"),
        )  # fmt: skip
        return JSONResponse(answer.to_dict())

    async def _run(self, box: FakeSandbox, command: FakeCommand) -> None:
        line, cwd, env = unwrap_command(command.command) or (command.command, WORKSPACE, {})

        async def record(stream: str, text: str) -> None:
            command.add(stream, text)

        try:
            result = await self.server.backend.exec(
                box.id, line, cwd=cwd, env=env, timeout=None, on_output=record
            )
            command.finish(result.exit_code)
        except ShoalError as exc:
            command.add("stderr", f"bash: {exc.message}\n")
            command.finish(1)
        except asyncio.CancelledError:
            command.finish(137)
            raise

    async def get_command(self, request: Request) -> Response:
        return JSONResponse(self._command(request).model().to_dict())

    async def get_logs(self, request: Request) -> Response:
        command = self._command(request)
        logs = SessionCommandLogsResponse(
            output=command.text(), stdout=command.text("stdout"), stderr=command.text("stderr")
        )
        return JSONResponse(logs.to_dict())

    async def follow_logs(self, websocket: WebSocket) -> None:
        """``?follow=true``: every chunk behind its stream marker, live, then close (1000)."""
        try:
            self.server.check_auth(websocket.headers.get("authorization"))
            self.server.find(websocket.path_params["sandbox_id"])
            command = self._command(websocket)
        except (ToolboxError, ShoalError):
            await websocket.close(code=1008)
            return
        await websocket.accept()
        sent = 0
        while True:
            while sent < len(command.chunks):
                stream, text = command.chunks[sent]
                marker = STDOUT_MARKER if stream == "stdout" else STDERR_MARKER
                await websocket.send_bytes(marker + text.encode())
                sent += 1
            if command.exit_code is not None:
                break
            command.changed.clear()
            if sent == len(command.chunks) and command.exit_code is None:
                await command.changed.wait()
        await websocket.close(code=1000)

    # -- files ---------------------------------------------------------------------------------

    async def list_files(self, request: Request) -> Response:
        box = self._box(request)
        entries = await self.server.backend.list_files(box.id, request.query_params["path"])
        return JSONResponse([_file_info(e).to_dict() for e in entries])

    async def create_folder(self, request: Request) -> Response:
        box = self._box(request)
        parts = workspace_parts(request.query_params["path"])
        int(request.query_params["mode"], 8)
        # the scripted sandbox has no mkdir; its directories are the parents it knows
        dirs = self.server.backend._box(box.id).dirs
        dirs.update(parts[: i + 1] for i in range(len(parts)))
        return Response(status_code=201)

    async def delete_file(self, request: Request) -> Response:
        box = self._box(request)
        path = request.query_params["path"]
        if request.query_params.get("recursive") not in ("true", "True", "1"):
            with contextlib.suppress(ShoalError):
                await self.server.backend.list_files(box.id, path)  # only directories list
                raise ToolboxError(400, f"{path} is a directory; set recursive=true")
        await self.server.backend.delete_file(box.id, path)
        return Response(status_code=204)

    async def upload(self, request: Request) -> Response:
        box = self._box(request)
        async with request.form(max_part_size=64 * 2**20) as form:
            paths = {k.removesuffix(".path"): v for k, v in form.items() if k.endswith(".path")}
            for key, value in form.items():
                if not key.endswith(".file") or not isinstance(value, UploadFile):
                    continue
                destination = paths.get(key.removesuffix(".file"))
                if not isinstance(destination, str):
                    raise ToolboxError(400, f"{key} has no matching .path field")
                await self.server.backend.write_file(box.id, destination, await value.read())
        return JSONResponse({"files": []})

    async def download(self, request: Request) -> Response:
        """A multipart answer: one ``file`` (or ``error``) part per path, named by the path."""
        body = await self.server.validated(request, FilesDownloadRequest)
        box = self._box(request)
        boundary = uuid.uuid4().hex
        out = bytearray()
        for path in body.paths:
            try:
                data, name, kind = await self.server.backend.read_file(box.id, path), "file", None
            except NotFound as exc:
                data, name, kind = _error_part(404, exc.message, "FILE_NOT_FOUND"), "error", "json"
            except PathOutsideWorkspace as exc:
                data, name, kind = (
                    _error_part(403, exc.message, "FILE_ACCESS_DENIED"),
                    "error",
                    "json",
                )
            except ShoalError as exc:
                data, name, kind = (
                    _error_part(400, exc.message, "INVALID_FILE_PATH"),
                    "error",
                    "json",
                )
            content_type = "application/json" if kind else "application/octet-stream"
            quoted = urllib.parse.quote(path, safe="")
            out += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f"filename*=utf-8''{quoted}\r\nContent-Type: {content_type}\r\n\r\n"
            ).encode()
            out += data + b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        return Response(bytes(out), media_type=f"multipart/form-data; boundary={boundary}")


def _error_part(status: int, message: str, code: str) -> bytes:
    payload = {"message": message, "statusCode": status, "code": code, "source": "DAYTONA_DAEMON"}
    return json.dumps(payload).encode()


def _file_info(entry: FileEntry) -> FileInfo:
    when = entry.mod_time.isoformat()
    return FileInfo(
        name=entry.name, path=entry.path, is_dir=entry.is_dir, size=entry.size, mode="0644",
        permissions="-rw-r--r--", owner="daytona", group="daytona", mod_time=when,
        modified_at=when,
    )  # fmt: skip
