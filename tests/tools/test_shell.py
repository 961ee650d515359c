"""execute_command, its background sessions and expose_port over the scripted sandbox."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from shoal.sandbox import SandboxState, ScriptedSandbox
from shoal.sandbox.fake import ScriptContext
from shoal.tools.sandbox_access import NO_SANDBOX
from tests.tools.conftest import SandboxHarness


async def test_blocking_command_streams_output_and_reports_exit_code(
    box: SandboxHarness, fake: ScriptedSandbox
) -> None:
    result = await box.call("execute_command", command="echo hello; echo oops >&2")

    assert result.success, result.output
    assert "hello" in result.output and "oops" in result.output
    assert result.output.rstrip().endswith("[exit code 0]")
    assert result.metadata["exit_code"] == 0 and result.metadata["cwd"] == "/workspace"
    assert box.output == [("stdout", "hello\n"), ("stderr", "oops\n")]  # live, in order
    assert (await fake.get("box1")).state is SandboxState.STARTED  # started on first use
    assert len(box.exec_seconds) == 1


async def test_non_zero_exit_fails_with_its_output(box: SandboxHarness) -> None:
    result = await box.call("execute_command", command="echo broken >&2; exit 3")
    assert not result.success
    assert "broken" in result.output and "[exit code 3]" in result.output
    assert result.metadata["exit_code"] == 3
    assert len(box.exec_seconds) == 1  # failed commands are metered too


async def test_timeout_kills_the_command_and_says_what_to_do(
    box: SandboxHarness, fake: ScriptedSandbox
) -> None:
    fake.on("long job", stdout="started\n", delay=30)
    result = await box.call("execute_command", command="long job", timeout=1)
    assert not result.success
    assert "started" in result.output
    assert "timed out after 1 s" in result.output and "session_name" in result.output
    assert result.metadata["timed_out"] is True and result.metadata["exit_code"] == 124
    assert len(box.exec_seconds) == 1 and box.exec_seconds[0] >= 0.9


async def test_timeout_above_the_maximum_is_refused_before_running(fake: ScriptedSandbox) -> None:
    await fake.create(sandbox_id="box1")
    box = SandboxHarness(fake, "box1", command_max_timeout_seconds=120)
    result = await box.call("execute_command", command="echo hi", timeout=600)
    assert not result.success and "at most 120 seconds" in result.output
    assert fake.calls == []


async def test_long_output_keeps_the_newest_part(fake: ScriptedSandbox) -> None:
    async def noisy(ctx: ScriptContext) -> int:
        for index in range(200):
            await ctx.emit("stdout", f"line {index:03d} " + "x" * 90 + "\n")
        return 0

    fake.on("noisy", noisy)
    await fake.create(sandbox_id="box1")
    box = SandboxHarness(
        fake, "box1", command_output_max_chars=2000, command_live_output_max_chars=5000
    )
    result = await box.call("execute_command", command="noisy")

    assert result.success
    assert "line 199" in result.output and "line 000" not in result.output
    assert re.search(r"\[… \d+ earlier characters omitted …\]", result.output)
    assert result.metadata["output_omitted_chars"] > 15_000
    live = box.live_text()
    assert "line 000" in live and "line 199" not in live  # the live stream is capped…
    assert "live output stops here" in live  # …and says so once
    assert len(live) < 5200


async def test_folder_sets_the_working_directory_and_stays_in_the_workspace(
    box: SandboxHarness, fake: ScriptedSandbox
) -> None:
    result = await box.call("execute_command", command="pwd", folder="src/app")
    assert result.output.startswith("/workspace/src/app")

    outside = await box.call("execute_command", command="pwd", folder="../etc")
    assert not outside.success and "outside /workspace" in outside.output
    assert [call.command for call in fake.calls] == ["pwd"]


async def test_without_a_sandbox_every_sandbox_tool_fails_clearly(box: SandboxHarness) -> None:
    calls: dict[str, dict[str, Any]] = {
        "execute_command": {"command": "ls"},
        "check_command_output": {"session_name": "s"},
        "terminate_command": {"session_name": "s"},
        "list_commands": {},
        "expose_port": {"port": 8000},
        "create_file": {"file_path": "a", "file_contents": "b"},
        "str_replace": {"file_path": "a", "old_str": "b", "new_str": "c"},
        "full_file_rewrite": {"file_path": "a", "file_contents": "b"},
        "delete_file": {"file_path": "a"},
        "read_file": {"file_path": "a"},
        "see_image": {"file_path": "a.png"},
    }
    assert sorted(calls) == sorted(box.registry.names)
    for name, arguments in calls.items():
        result = await box.registry.execute(name, arguments, box.context(sandbox=None))
        assert not result.success and result.output == NO_SANDBOX, name


async def test_cancelling_a_command_propagates_at_once_and_is_metered(
    box: SandboxHarness,
) -> None:
    task = asyncio.create_task(box.call("execute_command", command="sleep 600"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert len(box.exec_seconds) == 1 and box.exec_seconds[0] >= 0.1


# -- background sessions ---------------------------------------------------------------------------


async def _server(ctx: ScriptContext) -> int:
    await ctx.emit("stdout", "listening on 8000\n")
    await asyncio.sleep(0.3)
    await ctx.emit("stdout", "GET / 200\n")
    await asyncio.Event().wait()
    return 0


async def test_session_lifecycle(box: SandboxHarness, fake: ScriptedSandbox) -> None:
    fake.on("serve", _server)
    started = await box.call("execute_command", command="serve", session_name="web")
    assert started.success
    assert "background session 'web'" in started.output and "listening on 8000" in started.output
    assert "still running" in started.output
    assert started.metadata["running"] is True

    again = await box.call("execute_command", command="serve", session_name="web")
    assert not again.success and "still running in session 'web'" in again.output

    listed = await box.call("list_commands")
    assert "- web: running — serve" in listed.output

    await asyncio.sleep(0.5)
    checked = await box.call("check_command_output", session_name="web")
    assert checked.success and "GET / 200" in checked.output and "still running" in checked.output

    stopped = await box.call("terminate_command", session_name="web")
    assert stopped.success and "Terminated session 'web'" in stopped.output
    assert "GET / 200" in stopped.output

    after = await box.call("check_command_output", session_name="web")
    assert "finished, exit code 137" in after.output
    assert box.exec_seconds == []  # background sessions are not blocking exec time
    # ... they are metered as sessions: every tool that saw one reported it, with its times
    ended = [s for s in box.sessions_seen if s.name == "web" and not s.running]
    assert ended and all(s.started_at and s.ended_at for s in ended)
    assert len({(s.started_at, s.ended_at) for s in ended}) == 1  # one session run
    seconds = (ended[0].ended_at - ended[0].started_at).total_seconds()  # type: ignore[operator]
    assert 0.5 <= seconds < 30


async def test_a_session_that_fails_at_once_reports_failure(box: SandboxHarness) -> None:
    result = await box.call("execute_command", command="echo nope; exit 2", session_name="bad")
    assert not result.success
    assert "nope" in result.output and "finished, exit code 2" in result.output


async def test_non_blocking_without_a_name_gets_one(box: SandboxHarness) -> None:
    result = await box.call("execute_command", command="sleep 5", blocking=False)
    name = result.metadata["session_name"]
    assert result.success and re.fullmatch(r"cmd-[0-9a-f]{6}", name)
    assert name in (await box.call("list_commands")).output


async def test_blocking_true_wins_over_a_session_name(box: SandboxHarness) -> None:
    result = await box.call("execute_command", command="echo fg", session_name="x", blocking=True)
    assert result.success and "[exit code 0]" in result.output
    assert "No command sessions" in (await box.call("list_commands")).output


async def test_unknown_and_invalid_session_names(box: SandboxHarness) -> None:
    await box.call("execute_command", command="sleep 5", session_name="one")
    missing = await box.call("check_command_output", session_name="two")
    assert not missing.success
    assert "No command session named 'two'" in missing.output and "'one'" in missing.output
    gone = await box.call("terminate_command", session_name="two")
    assert not gone.success and "'two'" in gone.output

    bad = await box.call("execute_command", command="ls", session_name="a b/c")
    assert not bad.success and "Invalid session_name" in bad.output


async def test_terminating_a_finished_session_says_so(box: SandboxHarness) -> None:
    await box.call("execute_command", command="echo done", session_name="quick")
    result = await box.call("terminate_command", session_name="quick")
    assert result.success and "already finished (exit code 0)" in result.output


# -- ports -----------------------------------------------------------------------------------------


async def test_expose_port_returns_the_relay_url(
    box: SandboxHarness, fake: ScriptedSandbox
) -> None:
    async def listen(ctx: ScriptContext) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        ctx.listen(8000, handle)
        await asyncio.Event().wait()
        return 0

    fake.on("serve 8000", listen)
    quiet = await box.call("expose_port", port=3000)
    url = "http://shoal.test/api/sandboxes/box1/ports/3000/"
    assert quiet.success and url in quiet.output and quiet.metadata["url"] == url
    assert "nothing listens on port 3000 yet" in quiet.output

    await box.call("execute_command", command="serve 8000", session_name="srv")
    served = await box.call("expose_port", port=8000)
    assert served.metadata["listening"] is True and "nothing listens" not in served.output

    for port in (0, 70000):
        bad = await box.call("expose_port", port=port)
        assert not bad.success and "port" in bad.output
