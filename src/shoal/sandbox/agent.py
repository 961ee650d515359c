"""The exec agent: runs INSIDE a sandbox as a standalone script (standard library only).

It serves one JSON request per connection on an inherited listening unix socket (``--listen-fd``)
and answers with JSON lines:

- ``{"op": "ping"}`` → ``{"ok": true, "pid": …}``
- ``{"op": "exec", "command", "cwd", "env", "timeout", "cpu_seconds"}`` → any number of
  ``{"type": "out", "stream": "stdout"|"stderr", "text"}`` then
  ``{"type": "exit", "exit_code", "timed_out", "duration"}``. A closed connection kills it.
- ``{"op": "session_start"|"session_read"|"session_kill", "name", …}``,
  ``{"op": "session_list"}`` → ``{"ok": true, …}``
- ``{"op": "connect", "port"}`` → ``{"ok": true}`` then the connection is spliced to
  ``127.0.0.1:port`` (the port relay).

Failures are ``{"ok": false, "error": <code>, "message": …}``. Every command gets its own
session and process group; killing one kills its whole process tree.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import sys
import time
from typing import Any

SESSION_BUFFER = 1 << 20
REQUEST_LIMIT = 16 << 20  # a command may carry a whole file in a heredoc
MAX_SESSIONS = 64
DETACH_AFTER = 1.0  # seconds to keep reading pipes held open by a command's background children
WORKSPACE = "/workspace"


class Failure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s process group and every descendant (even ones that left the group)."""
    victims = _descendants(pid)
    for _ in range(3):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        for victim in [pid, *victims]:
            with contextlib.suppress(OSError):
                os.kill(victim, signal.SIGKILL)
        victims = _descendants(pid)
        if not victims:
            return


class Agent:
    def __init__(self, workspace: str, shell: str) -> None:
        self.workspace = workspace
        self.shell = shell
        self.sessions: dict[str, Session] = {}

    def host_path(self, path: str) -> str:
        """Map ``/workspace/…`` to the real workspace (differs only without bubblewrap)."""
        if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
            return self.workspace + path[len(WORKSPACE) :]
        return path

    async def spawn(
        self, request: dict[str, Any], *, merge: bool, cpu_seconds: int | None
    ) -> asyncio.subprocess.Process:
        command = str(request.get("command", ""))
        cwd = self.host_path(str(request.get("cwd") or WORKSPACE))
        if not os.path.isdir(cwd):  # noqa: ASYNC240 - a stat; the agent serves one sandbox
            raise Failure("bad_cwd", f"working directory not found: {request.get('cwd')}")
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (request.get("env") or {}).items()})
        if cpu_seconds:
            argv = [self.shell, "-c", 'ulimit -t "$0" && exec "$1" -c "$2"']
            argv += [str(cpu_seconds), self.shell, command]
        else:
            argv = [self.shell, "-c", command]
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if merge else asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:  # e.g. EAGAIN: the sandbox is out of processes
            raise Failure("spawn_failed", f"cannot start the command: {exc}") from None

    # -- requests ------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            op = request.get("op")
            if op == "exec":
                await self.exec(request, reader, writer)
            elif op == "connect":
                await self.connect(int(request["port"]), reader, writer)
            else:
                await send(writer, {"ok": True, **(await self.sessions_op(op, request))})
        except Failure as failure:
            await send(writer, {"ok": False, "error": failure.code, "message": failure.message})
        except (ValueError, KeyError, TypeError) as exc:
            await send(writer, {"ok": False, "error": "bad_request", "message": str(exc)})
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def exec(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        started = time.monotonic()
        cpu = request.get("cpu_seconds")
        proc = await self.spawn(request, merge=False, cpu_seconds=int(cpu) if cpu else None)
        pumps = [
            asyncio.ensure_future(pump(stream, name, writer))
            for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
        ]
        hangup = asyncio.ensure_future(reader.read())  # the client went away → kill
        waiter = asyncio.ensure_future(proc.wait())
        timeout = request.get("timeout")
        done, _ = await asyncio.wait(
            {waiter, hangup},
            timeout=float(timeout) if timeout else None,
            return_when=asyncio.FIRST_COMPLETED,
        )
        timed_out = waiter not in done
        if timed_out:
            kill_tree(proc.pid)
        code = await waiter
        _, pending = await asyncio.wait(pumps, timeout=DETACH_AFTER)
        for task in [*pending, hangup]:
            task.cancel()
        if hangup in done:
            return
        exit_code = 124 if timed_out else (code if code >= 0 else 128 - code)
        duration = round(time.monotonic() - started, 3)
        frame = {"type": "exit", "exit_code": exit_code, "timed_out": timed_out}
        await send(writer, {**frame, "duration": duration})

    async def connect(
        self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            raise Failure("port_closed", f"nothing listens on port {port}: {exc}") from None
        await send(writer, {"ok": True})
        await asyncio.gather(splice(reader, up_writer), splice(up_reader, writer))
        up_writer.close()

    async def sessions_op(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "session_list":
            return {"sessions": [s.info() for s in self.sessions.values()]}
        name = str(request.get("name", ""))
        if op == "session_start":
            return {"session": self.start_session(name, request)}
        session = self.sessions.get(name)
        if session is None:
            raise Failure("session_not_found", f"no session named {name!r}")
        if op == "session_read":
            return {"session": session.info(), **session.output()}
        if op == "session_kill":
            await session.kill()
            return {"session": session.info()}
        raise Failure("bad_request", f"unknown op {op!r}")

    def start_session(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        if not name:
            raise Failure("bad_request", "a session needs a name")
        current = self.sessions.get(name)
        if current is not None and current.running:
            raise Failure("session_exists", f"session {name!r} is still running")
        finished = [n for n, s in self.sessions.items() if not s.running]
        if len(self.sessions) >= MAX_SESSIONS and finished:
            del self.sessions[finished[0]]
        session = Session(name, str(request.get("command", "")))
        self.sessions[name] = session
        session.task = asyncio.ensure_future(session.run(self, request))
        return session.info()


class Session:
    def __init__(self, name: str, command: str) -> None:
        self.name = name
        self.command = command
        self.buffer = bytearray()
        self.dropped = 0
        self.exit_code: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.task: asyncio.Future[None] | None = None
        self.started_at = time.time()
        self.ended_at: float | None = None

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": self.command,
            "running": self.running,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    def ended(self, code: int) -> None:
        self.exit_code = code
        self.ended_at = time.time()

    def output(self) -> dict[str, Any]:
        text = bytes(self.buffer).decode("utf-8", "replace")
        return {"output": text, "truncated": self.dropped > 0}

    async def run(self, agent: Agent, request: dict[str, Any]) -> None:
        try:
            proc = await agent.spawn(request, merge=True, cpu_seconds=None)
        except (Failure, OSError) as exc:
            self.buffer += f"failed to start: {exc}\n".encode()
            self.ended(127)
            return
        self.proc = proc
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            self.buffer += chunk
            if len(self.buffer) > SESSION_BUFFER:
                excess = len(self.buffer) - SESSION_BUFFER
                del self.buffer[:excess]
                self.dropped += excess
        code = await proc.wait()
        if self.running:
            self.ended(code if code >= 0 else 128 - code)

    async def kill(self) -> None:
        """Kill the session's process tree and wait (briefly) for it to be gone."""
        if self.proc is None or not self.running:
            return
        kill_tree(self.proc.pid)
        with contextlib.suppress(asyncio.TimeoutError):
            code = await asyncio.wait_for(self.proc.wait(), timeout=5)
            if self.running:
                self.ended(code if code >= 0 else 128 - code)


async def send(writer: asyncio.StreamWriter, frame: dict[str, Any]) -> None:
    writer.write(json.dumps(frame).encode() + b"\n")
    await writer.drain()


async def pump(
    stream: asyncio.StreamReader | None, name: str, writer: asyncio.StreamWriter
) -> None:
    if stream is None:
        return
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        chunk = await stream.read(65536)
        text = decoder.decode(chunk, final=not chunk)
        if text:
            with contextlib.suppress(ConnectionError, OSError):
                await send(writer, {"type": "out", "stream": name, "text": text})
        if not chunk:
            return


async def splice(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        sink.close()


def apply_limits(args: argparse.Namespace) -> None:
    """Sandbox-wide rlimits, inherited by every command (hard = soft: no raising them)."""
    limits = (
        (resource.RLIMIT_NPROC, args.nproc),
        (resource.RLIMIT_AS, args.address_space),
        (resource.RLIMIT_FSIZE, args.file_size),
        (resource.RLIMIT_CORE, 0),
    )
    for kind, value in limits:
        if value is not None and value >= 0:
            resource.setrlimit(kind, (value, value))
    with contextlib.suppress(OSError, AttributeError):
        # Not dumpable: same-uid commands can neither ptrace this process nor read its fds.
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)


async def serve(args: argparse.Namespace) -> None:
    agent = Agent(args.workspace, args.shell)
    listener = socket.socket(fileno=args.listen_fd)
    listener.setblocking(False)
    server = await asyncio.start_unix_server(agent.handle, sock=listener, limit=REQUEST_LIMIT)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--sandbox-id", help="marks this sandbox's processes for the host")
    parser.add_argument("--workspace", default=WORKSPACE)
    parser.add_argument("--shell", default="/bin/bash")
    parser.add_argument("--nproc", type=int)
    parser.add_argument("--address-space", type=int)
    parser.add_argument("--file-size", type=int)
    args = parser.parse_args()
    if not os.path.exists(args.shell):
        args.shell = "/bin/sh"
    apply_limits(args)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if sys.version_info < (3, 12) and hasattr(asyncio, "PidfdChildWatcher"):
        # No watcher thread per child: threads count against RLIMIT_NPROC.
        with contextlib.suppress(OSError, NotImplementedError):
            asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
