"""The sandbox tools against the real local (bubblewrap) provider."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.config import Settings
from shoal.engine import AgentConfig, CollectingSink, InMemoryMessageStore
from shoal.engine.thread_manager import ThreadManager
from shoal.errors import ShoalError
from shoal.llm import DEMO_MODEL, build_chat_model
from shoal.sandbox import LocalProvider, SandboxState
from shoal.sandbox.uids import processes_of
from shoal.tools import build_tool_registry
from tests.sandbox.conftest import local_provider, require_bubblewrap, sandbox_root
from tests.tools.conftest import SandboxHarness

__all__ = ["sandbox_root"]

pytestmark = pytest.mark.services

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture
async def local(sandbox_root: Path) -> AsyncIterator[SandboxHarness]:
    """Sandbox tools over a created, stopped local sandbox (the first tool call starts it)."""
    await require_bubblewrap()
    provider = local_provider(sandbox_root)
    info = await provider.create()
    yield SandboxHarness(provider, info.sandbox_id, command_session_wait_seconds=0.5)
    with contextlib.suppress(ShoalError):
        await provider.delete(info.sandbox_id)
    await provider.aclose()


def sleeps_of(provider: LocalProvider, sandbox_id: str) -> list[int]:
    """Host pids of ``sleep`` processes running as the sandbox's uid."""
    uid = provider.uids.lookup(sandbox_id)
    assert uid is not None, "tests run as root: every sandbox has its own uid"
    found = []
    for pid in processes_of(uid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                found.append(pid)
    return found


async def test_command_output_streams_and_fails_on_exit_code(local: SandboxHarness) -> None:
    result = await local.call(
        "execute_command", command="echo out; sleep 0.2; echo err >&2; exit 3"
    )
    assert not result.success
    assert "out" in result.output and "err" in result.output
    assert result.output.rstrip().endswith("[exit code 3]")
    assert ("stdout", "out\n") in local.output and ("stderr", "err\n") in local.output
    assert (await local.provider.get(local.sandbox_id)).state is SandboxState.STARTED
    assert len(local.exec_seconds) == 1 and local.exec_seconds[0] >= 0.2


async def test_cancelling_execute_command_kills_the_command(local: SandboxHarness) -> None:
    assert isinstance(local.provider, LocalProvider)
    task = asyncio.create_task(local.call("execute_command", command="sleep 600"))
    deadline = time.monotonic() + 20
    while not sleeps_of(local.provider, local.sandbox_id):
        assert time.monotonic() < deadline, "sleep never started"
        await asyncio.sleep(0.05)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)  # promptly, not after the command
    deadline = time.monotonic() + 10
    while left := sleeps_of(local.provider, local.sandbox_id):
        assert time.monotonic() < deadline, f"sleep survived the cancelled call: {left}"
        await asyncio.sleep(0.05)
    assert len(local.exec_seconds) == 1
    assert (await local.call("execute_command", command="echo alive")).success  # box still up


async def test_timeout_kills_the_command(local: SandboxHarness) -> None:
    assert isinstance(local.provider, LocalProvider)
    result = await local.call("execute_command", command="echo begin; sleep 600", timeout=1)
    assert not result.success and "timed out after 1 s" in result.output
    assert "begin" in result.output and result.metadata["exit_code"] == 124
    assert sleeps_of(local.provider, local.sandbox_id) == []


async def test_background_session_and_port(local: SandboxHarness) -> None:
    server = "python3 -m http.server 8765 --bind 127.0.0.1"
    started = await local.call("execute_command", command=server, session_name="web")
    assert started.success and started.metadata["running"] is True

    deadline = time.monotonic() + 20
    exposed = await local.call("expose_port", port=8765)
    while not exposed.metadata["listening"]:
        assert time.monotonic() < deadline, exposed.output
        await asyncio.sleep(0.2)
        exposed = await local.call("expose_port", port=8765)
    assert exposed.metadata["url"].endswith(f"/sandboxes/{local.sandbox_id}/ports/8765/")

    fetched = await local.call(
        "execute_command",
        command='python3 -c "import urllib.request as u; '
        "print(u.urlopen('http://127.0.0.1:8765/').status)\"",
    )
    assert fetched.success and "200" in fetched.output
    checked = await local.call("check_command_output", session_name="web")
    assert "GET / HTTP" in checked.output and "still running" in checked.output
    assert "- web: running" in (await local.call("list_commands")).output

    stopped = await local.call("terminate_command", session_name="web")
    assert stopped.success and "Terminated session 'web'" in stopped.output
    closed = await local.call("expose_port", port=8765)
    assert closed.metadata["listening"] is False


async def test_file_tools_round_trip(local: SandboxHarness) -> None:
    created = await local.call(
        "create_file",
        file_path="bin/greet.sh",
        file_contents="#!/bin/sh\necho hi there\n",
        permissions="755",
    )
    assert created.success, created.output
    ran = await local.call("execute_command", command="./greet.sh", folder="bin")
    assert ran.success and "hi there" in ran.output

    edited = await local.call(
        "str_replace", file_path="bin/greet.sh", old_str="hi there", new_str="hello"
    )
    assert edited.success
    read = await local.call("read_file", file_path="/workspace/bin/greet.sh", start_line=2)
    assert read.output == "echo hello\n"

    link = await local.call("execute_command", command="ln -s /etc/passwd leak")
    assert link.success
    leaked = await local.call("read_file", file_path="leak")
    assert not leaked.success and "outside /workspace" in leaked.output

    deleted = await local.call("delete_file", file_path="bin")
    assert deleted.success
    listing = await local.call("execute_command", command="ls")
    assert "bin" not in listing.output.split()


async def test_see_image_from_the_workspace(local: SandboxHarness) -> None:
    await local.provider.write_file(local.sandbox_id, "shot.png", PNG)
    result = await local.call("see_image", file_path="shot.png")
    assert result.success and result.metadata["image"]["mime_type"] == "image/png"


async def test_demo_model_writes_and_runs_a_script(local: SandboxHarness) -> None:
    store, sink = InMemoryMessageStore(), CollectingSink()
    settings = Settings()
    manager = ThreadManager(
        model=build_chat_model(settings),
        store=store,
        sink=sink,
        tools=build_tool_registry(settings),
    )
    result = await manager.run(
        "t",
        AgentConfig(model=DEMO_MODEL),
        prompt="write a python script that prints hello and run it",
        sandbox=local.access,
    )
    assert result.finish_reason == "stop"
    stored = store.all_messages("t")
    assert [m["type"] for m in stored] == ["user", "assistant", "tool", "tool", "assistant"]
    assert "hello\n[exit code 0]" in stored[-1]["content"]["content"]
    deltas = "".join(e.data["text"] for e in sink.of_type("tool_output_delta"))
    assert deltas == "hello\n"
    data = await local.provider.read_file(local.sandbox_id, "hello.py")
    assert data == b"print('hello')\n"
