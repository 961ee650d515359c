"""One behavioural suite every sandbox provider passes (local, unsafe-local, the fake, and Daytona
against its fake API). Commands stick to what the fake's scripts and mini shell know."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shoal.errors import NotFound, PathOutsideWorkspace
from shoal.sandbox import (
    SandboxNotFound,
    SandboxNotRunning,
    SandboxProvider,
    SandboxState,
    SessionExists,
    SessionNotFound,
)
from tests.sandbox.conftest import Factory

# -- lifecycle ---------------------------------------------------------------------------------


async def test_create_start_stop_states(provider: SandboxProvider, make_sandbox: Factory) -> None:
    sandbox_id = await make_sandbox(labels={"project": "p1"})
    info = await provider.get(sandbox_id)
    assert info.state is SandboxState.STARTED
    assert info.labels == {"project": "p1"}
    assert info.network == "none"
    assert (await provider.stop(sandbox_id)).state is SandboxState.STOPPED
    assert (await provider.get(sandbox_id)).state is SandboxState.STOPPED
    with pytest.raises(SandboxNotRunning):
        await provider.exec(sandbox_id, "true")
    assert (await provider.start(sandbox_id)).state is SandboxState.STARTED
    assert (await provider.exec(sandbox_id, "true")).exit_code == 0


async def test_network_policy_changes_keep_the_workspace(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    """A project's ``sandbox_network`` may change after its sandbox exists: the policy is
    applied to it (running: still running afterwards; stopped: from its next start), and the
    workspace is untouched."""
    sandbox_id = await make_sandbox(network="none")
    await provider.write_file(sandbox_id, "kept.txt", b"still here")
    opened = await provider.set_network(sandbox_id, "open")
    assert (opened.network, opened.state) == ("open", SandboxState.STARTED)
    assert (await provider.get(sandbox_id)).network == "open"
    assert (await provider.exec(sandbox_id, "cat kept.txt")).stdout == "still here"
    await provider.stop(sandbox_id)
    closed = await provider.set_network(sandbox_id, "none")
    assert (closed.network, closed.state) == ("none", SandboxState.STOPPED)
    started = await provider.start(sandbox_id)
    assert (started.network, started.state) == ("none", SandboxState.STARTED)
    with pytest.raises(SandboxNotFound):
        await provider.set_network("nope", "open")


async def test_unknown_and_deleted_sandboxes_are_not_found(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    with pytest.raises(SandboxNotFound):
        await provider.get("nope")
    with pytest.raises(SandboxNotFound):
        await provider.get("../../etc")
    sandbox_id = await make_sandbox()
    await provider.delete(sandbox_id)
    with pytest.raises(SandboxNotFound):
        await provider.get(sandbox_id)
    with pytest.raises(SandboxNotFound):
        await provider.read_file(sandbox_id, "x")


# -- exec --------------------------------------------------------------------------------------


async def test_exit_codes_and_separate_streams(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    sandbox_id = await make_sandbox()
    assert (await provider.exec(sandbox_id, "true")).ok
    result = await provider.exec(sandbox_id, "exit 3")
    assert (result.exit_code, result.ok, result.timed_out) == (3, False, False)
    result = await provider.exec(sandbox_id, "echo out; echo err >&2")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 0)
    assert (await provider.exec(sandbox_id, "no-such-command-xyz")).exit_code == 127


async def test_output_streams_live_and_in_order(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    sandbox_id = await make_sandbox()
    seen: list[tuple[str, str, float]] = []

    async def on_output(stream: str, text: str) -> None:
        seen.append((stream, text, time.monotonic()))

    command = "echo a; sleep 0.3; echo b >&2; sleep 0.3; echo c; sleep 0.6; echo d"
    result = await provider.exec(sandbox_id, command, on_output=on_output)
    finished = time.monotonic()
    assert [(s, t) for s, t, _ in seen] == [
        ("stdout", "a\n"),
        ("stderr", "b\n"),
        ("stdout", "c\n"),
        ("stdout", "d\n"),
    ]
    assert finished - seen[0][2] >= 1.0, "the first chunk arrived only at the end"
    assert result.stdout == "a\nc\nd\n"
    assert result.stderr == "b\n"


async def test_cwd_and_env(provider: SandboxProvider, make_sandbox: Factory) -> None:
    sandbox_id = await make_sandbox(env={"FROM_SPEC": "spec"})
    await provider.write_file(sandbox_id, "sub/dir/keep.txt", b"")
    # (endswith: unsafe-local has no /workspace, its commands run in the real directory)
    assert (await provider.exec(sandbox_id, "pwd")).stdout.endswith("/workspace\n")
    result = await provider.exec(sandbox_id, "pwd", cwd="/workspace/sub/dir")
    assert result.stdout.endswith("/workspace/sub/dir\n")
    result = await provider.exec(sandbox_id, "echo $FOO $FROM_SPEC", env={"FOO": "bar"})
    assert result.stdout == "bar spec\n"


async def test_timeout_returns_promptly_and_kills_the_command(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    sandbox_id = await make_sandbox()
    started = time.monotonic()
    result = await provider.exec(sandbox_id, "sleep 100", timeout=1)
    assert result.timed_out
    assert result.exit_code == 124
    assert time.monotonic() - started < 5
    # A killed command never finishes what it started.
    result = await provider.exec(sandbox_id, "sleep 1.5; echo late > late.txt", timeout=0.5)
    assert result.timed_out
    await asyncio.sleep(2.0)
    names = [entry.name for entry in await provider.list_files(sandbox_id)]
    assert "late.txt" not in names


async def test_files_written_by_commands_and_files_read_by_commands(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    sandbox_id = await make_sandbox()
    await provider.write_file(sandbox_id, "hello.txt", b"hi there")
    assert (await provider.exec(sandbox_id, "cat hello.txt")).stdout == "hi there"
    assert (await provider.exec(sandbox_id, "echo made > made.txt")).exit_code == 0
    assert await provider.read_file(sandbox_id, "/workspace/made.txt") == b"made\n"


# -- background sessions and ports -------------------------------------------------------------


async def _get_listing(provider: SandboxProvider, sandbox_id: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        result = await provider.exec(sandbox_id, "curl -s localhost:8001", timeout=5)
        if "Directory listing" in result.stdout or time.monotonic() > deadline:
            return result.stdout
        await asyncio.sleep(0.1)


async def _relay_get(provider: SandboxProvider, sandbox_id: str, port: int) -> tuple[int, bytes]:
    """``GET /`` through the port relay's transport: the provider's preview link when it gives
    one (Daytona), else a raw connection from ``open_port``."""
    link = await provider.preview_link(sandbox_id, port)
    if link is not None:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(link.url.rstrip("/") + "/", headers=dict(link.headers))
        return answer.status_code, answer.content
    conn = await provider.open_port(sandbox_id, port)
    conn.writer.write(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
    await conn.writer.drain()
    response = await asyncio.wait_for(conn.reader.read(), timeout=5)
    await conn.aclose()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 ")
    return int(head.split()[1]), body


async def test_background_session_serves_the_next_command_and_the_port_relay(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    sandbox_id = await make_sandbox()
    info = await provider.start_session(sandbox_id, "web", "python3 -m http.server 8001")
    assert (info.name, info.running) == ("web", True)
    assert "Directory listing" in await _get_listing(provider, sandbox_id)

    status, body = await _relay_get(provider, sandbox_id, 8001)
    assert status == 200
    assert b"Directory listing" in body

    output = await provider.read_session(sandbox_id, "web")
    assert output.running
    assert "Serving HTTP" in output.output
    assert [s.name for s in await provider.list_sessions(sandbox_id)] == ["web"]
    with pytest.raises(SessionExists):
        await provider.start_session(sandbox_id, "web", "python3 -m http.server 8001")

    killed = await provider.kill_session(sandbox_id, "web")
    assert not killed.running
    assert killed.exit_code is not None
    assert not (await provider.read_session(sandbox_id, "web")).running
    result = await provider.exec(sandbox_id, "curl -s localhost:8001", timeout=5)
    assert "Directory listing" not in result.stdout
    with pytest.raises(SessionNotFound):
        await provider.read_session(sandbox_id, "nope")


async def test_sessions_report_when_they_started_and_ended(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    """What metering a background session's sandbox time needs: its start, and its end once
    it finished or was killed (in every view: start, read, list, kill)."""
    sandbox_id = await make_sandbox()
    before = datetime.now(UTC) - timedelta(seconds=1)  # the sandbox's clock may round down
    started = await provider.start_session(sandbox_id, "nap", "sleep 0.5")
    assert started.started_at is not None and started.started_at >= before
    assert started.ended_at is None
    for _ in range(200):
        output = await provider.read_session(sandbox_id, "nap")
        if not output.running:
            break
        await asyncio.sleep(0.05)
    assert not output.running
    assert output.started_at == started.started_at
    assert output.ended_at is not None
    assert 0.4 <= (output.ended_at - started.started_at).total_seconds() < 30
    (listed,) = [s for s in await provider.list_sessions(sandbox_id) if s.name == "nap"]
    assert (listed.started_at, listed.ended_at) == (output.started_at, output.ended_at)

    await provider.start_session(sandbox_id, "long", "sleep 600")
    (running,) = [s for s in await provider.list_sessions(sandbox_id) if s.name == "long"]
    assert running.running and running.started_at is not None and running.ended_at is None
    killed = await provider.kill_session(sandbox_id, "long")
    assert killed.started_at == running.started_at
    assert killed.ended_at is not None and killed.ended_at >= running.started_at


async def test_a_finished_session_keeps_its_output_and_exit_code(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    sandbox_id = await make_sandbox()
    await provider.start_session(sandbox_id, "job", "echo one; echo two >&2; exit 4")
    for _ in range(100):
        output = await provider.read_session(sandbox_id, "job")
        if not output.running:
            break
        await asyncio.sleep(0.05)
    assert (output.running, output.exit_code) == (False, 4)
    assert "one\n" in output.output
    assert "two\n" in output.output
    # a finished session's name can be reused
    assert (await provider.start_session(sandbox_id, "job", "sleep 5")).running


# -- files -------------------------------------------------------------------------------------


async def test_file_round_trips(provider: SandboxProvider, make_sandbox: Factory) -> None:
    sandbox_id = await make_sandbox()
    cases = {
        "notes.txt": "héllo wörld ✓\nline two\n".encode(),
        "/workspace/bin/blob.bin": bytes(range(256)) * 16,
        "big/five-mb.dat": os.urandom(5 * 1024 * 1024),
        "données/résumé ✓.txt": "ünïcödé".encode(),
        "日本語.txt": b"",
    }
    for path, data in cases.items():
        entry = await provider.write_file(sandbox_id, path, data)
        assert entry.size == len(data)
        assert entry.path == "/workspace/" + path.removeprefix("/workspace/")
    for path, data in cases.items():
        assert await provider.read_file(sandbox_id, path) == data

    listing = {e.name: e for e in await provider.list_files(sandbox_id)}
    assert {"notes.txt", "bin", "big", "données", "日本語.txt"} <= set(listing)
    assert listing["big"].is_dir
    assert listing["notes.txt"].size == len(cases["notes.txt"])
    assert listing["notes.txt"].path == "/workspace/notes.txt"
    nested = await provider.list_files(sandbox_id, "/workspace/données")
    assert [(e.name, e.path) for e in nested] == [
        ("résumé ✓.txt", "/workspace/données/résumé ✓.txt")
    ]

    await provider.write_file(sandbox_id, "notes.txt", b"overwritten")
    assert await provider.read_file(sandbox_id, "notes.txt") == b"overwritten"
    await provider.delete_file(sandbox_id, "notes.txt")
    with pytest.raises(NotFound):
        await provider.read_file(sandbox_id, "notes.txt")
    await provider.delete_file(sandbox_id, "big")  # a directory: recursive
    assert "big" not in {e.name for e in await provider.list_files(sandbox_id)}
    with pytest.raises(NotFound):
        await provider.delete_file(sandbox_id, "big")


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/etc/passwd", "a/../../x", "/workspace/../etc/passwd", "/tmp/x"]
)
async def test_paths_outside_the_workspace_are_refused(
    provider: SandboxProvider, make_sandbox: Factory, path: str
) -> None:
    sandbox_id = await make_sandbox()
    with pytest.raises(PathOutsideWorkspace):
        await provider.read_file(sandbox_id, path)
    with pytest.raises(PathOutsideWorkspace):
        await provider.write_file(sandbox_id, path, b"x")
    with pytest.raises(PathOutsideWorkspace):
        await provider.delete_file(sandbox_id, path)
    with pytest.raises(PathOutsideWorkspace):
        await provider.list_files(sandbox_id, path)


# -- persistence and isolation -----------------------------------------------------------------


async def test_workspace_persists_across_stop_and_start(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    sandbox_id = await make_sandbox()
    await provider.write_file(sandbox_id, "kept.txt", b"still here")
    await provider.exec(sandbox_id, "echo from a command > cmd.txt")
    await provider.start_session(sandbox_id, "web", "python3 -m http.server 8001")
    assert "Directory listing" in await _get_listing(provider, sandbox_id)
    await provider.stop(sandbox_id)
    assert await provider.read_file(sandbox_id, "kept.txt") == b"still here"  # while stopped
    await provider.start(sandbox_id)
    assert (await provider.exec(sandbox_id, "cat kept.txt cmd.txt")).stdout == (
        "still herefrom a command\n"
    )
    # processes did not survive the stop
    assert await provider.list_sessions(sandbox_id) == []
    result = await provider.exec(sandbox_id, "curl -s localhost:8001", timeout=5)
    assert "Directory listing" not in result.stdout


async def test_sandboxes_are_isolated_from_each_other(
    provider: SandboxProvider, make_sandbox: Factory
) -> None:
    a, b = await make_sandbox(), await make_sandbox()
    await provider.write_file(a, "secret.txt", b"for a only")
    assert "secret.txt" not in {e.name for e in await provider.list_files(b)}
    with pytest.raises(NotFound):
        await provider.read_file(b, "secret.txt")
    result = await provider.exec(b, "cat /workspace/secret.txt")
    assert result.exit_code != 0
    assert "for a only" not in result.stdout
    if provider.name == "unsafe-local":
        return  # no network namespace: ports are shared with the host
    await provider.start_session(a, "web", "python3 -m http.server 8001")
    assert "Directory listing" in await _get_listing(provider, a)
    result = await provider.exec(b, "curl -s localhost:8001", timeout=5)
    assert "Directory listing" not in result.stdout
