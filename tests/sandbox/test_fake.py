"""What ScriptedSandbox offers tool tests beyond the conformance suite."""

from __future__ import annotations

import re

import pytest

from shoal.errors import PathOutsideWorkspace
from shoal.sandbox import SandboxNotRunning, ScriptedSandbox
from shoal.sandbox.fake import ScriptContext


async def test_scripts_canned_output_and_recorded_calls() -> None:
    fake = ScriptedSandbox()
    fake.on("pytest -q", stdout="3 passed\n", stderr="warning\n", exit_code=1)

    async def count_files(ctx: ScriptContext) -> int:
        entries = await ctx.sandbox.list_files(ctx.sandbox_id)
        await ctx.emit("stdout", f"{len(entries)} files in {ctx.cwd} for {ctx.env['WHO']}\n")
        return 0

    fake.on(re.compile(r"count( .*)?"), count_files)
    sandbox_id = (await fake.create()).sandbox_id
    with pytest.raises(SandboxNotRunning):
        await fake.exec(sandbox_id, "pytest -q")
    await fake.start(sandbox_id)
    result = await fake.exec(sandbox_id, "pytest -q")
    assert (result.stdout, result.stderr, result.exit_code) == ("3 passed\n", "warning\n", 1)
    await fake.write_file(sandbox_id, "a.txt", b"x")
    result = await fake.exec(sandbox_id, "count all", env={"WHO": "me"})
    assert result.stdout == "1 files in /workspace for me\n"
    assert [(c.command, c.env.get("WHO")) for c in fake.calls] == [
        ("pytest -q", None),
        ("count all", "me"),
    ]


async def test_mini_shell_and_symlinks() -> None:
    fake = ScriptedSandbox()
    sandbox_id = (await fake.create()).sandbox_id
    await fake.start(sandbox_id)
    result = await fake.exec(sandbox_id, "echo one > f.txt; echo two >> f.txt; cat f.txt")
    assert result.stdout == "one\ntwo\n"
    assert (await fake.exec(sandbox_id, "make build")).exit_code == 127
    fake.add_symlink(sandbox_id, "etc", "/etc")
    fake.add_symlink(sandbox_id, "here", "/workspace")
    with pytest.raises(PathOutsideWorkspace):
        await fake.read_file(sandbox_id, "etc/passwd")
    assert await fake.read_file(sandbox_id, "here/f.txt") == b"one\ntwo\n"
