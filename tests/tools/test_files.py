"""create_file, str_replace, full_file_rewrite, delete_file and read_file over the fake."""

from __future__ import annotations

import re

import pytest

from shoal.sandbox import ScriptedSandbox
from tests.tools.conftest import SandboxHarness


async def test_create_then_read(box: SandboxHarness, fake: ScriptedSandbox) -> None:
    created = await box.call("create_file", file_path="src/app.py", file_contents="print(1)\n")
    assert created.success and "/workspace/src/app.py" in created.output
    assert await fake.read_file("box1", "src/app.py") == b"print(1)\n"

    read = await box.call("read_file", file_path="/workspace/src/app.py")
    assert read.success and read.output == "print(1)\n"
    assert read.metadata["total_lines"] == 1


async def test_create_refuses_to_overwrite(box: SandboxHarness, fake: ScriptedSandbox) -> None:
    await box.call("create_file", file_path="a.txt", file_contents="one")
    again = await box.call("create_file", file_path="./a.txt", file_contents="two")
    assert not again.success
    assert "already exists" in again.output
    assert "full_file_rewrite" in again.output and "str_replace" in again.output
    assert await fake.read_file("box1", "a.txt") == b"one"

    folder = await box.call("create_file", file_path="src/x.py", file_contents="")
    assert folder.success
    on_dir = await box.call("create_file", file_path="src", file_contents="")
    assert not on_dir.success and "a directory" in on_dir.output


async def test_create_with_permissions_runs_chmod(
    box: SandboxHarness, fake: ScriptedSandbox
) -> None:
    fake.on(re.compile(r"chmod \d+ .*"), stdout="")
    result = await box.call(
        "create_file", file_path="run.sh", file_contents="echo hi\n", permissions="755"
    )
    assert result.success
    assert [c.command for c in fake.calls] == ["chmod 755 /workspace/run.sh"]

    bad = await box.call("create_file", file_path="b.sh", file_contents="", permissions="rwx")
    assert not bad.success and "octal mode" in bad.output
    assert not (await box.call("read_file", file_path="b.sh")).success  # nothing written


@pytest.mark.parametrize(
    ("content", "expected"),
    [("alpha beta gamma", "0 matches"), ("x = 1\nx = 1\n", "2 matches")],
)
async def test_str_replace_needs_exactly_one_match(
    box: SandboxHarness, fake: ScriptedSandbox, content: str, expected: str
) -> None:
    await fake.write_file("box1", "f.txt", content.encode())
    old = "x = 1" if "x" in content else "delta"
    result = await box.call("str_replace", file_path="f.txt", old_str=old, new_str="y")
    assert not result.success and expected in result.output
    assert await fake.read_file("box1", "f.txt") == content.encode()  # untouched


async def test_str_replace_edits_the_single_match(
    box: SandboxHarness, fake: ScriptedSandbox
) -> None:
    await fake.write_file("box1", "f.py", b"def f():\n    return 1\n")
    result = await box.call("str_replace", file_path="f.py", old_str="return 1", new_str="return 2")
    assert result.success and "line 2" in result.output
    assert await fake.read_file("box1", "f.py") == b"def f():\n    return 2\n"

    empty = await box.call("str_replace", file_path="f.py", old_str="", new_str="x")
    assert not empty.success and "old_str is empty" in empty.output


async def test_full_file_rewrite_replaces_or_creates(
    box: SandboxHarness, fake: ScriptedSandbox
) -> None:
    await fake.write_file("box1", "f.txt", b"old")
    rewritten = await box.call("full_file_rewrite", file_path="f.txt", file_contents="new")
    assert rewritten.success and rewritten.output.startswith("Rewrote")
    assert await fake.read_file("box1", "f.txt") == b"new"
    created = await box.call("full_file_rewrite", file_path="g.txt", file_contents="fresh")
    assert created.success and created.output.startswith("Created")


async def test_delete_file(box: SandboxHarness, fake: ScriptedSandbox) -> None:
    await fake.write_file("box1", "tmp/f.txt", b"x")
    deleted = await box.call("delete_file", file_path="tmp/f.txt")
    assert deleted.success
    read = await box.call("read_file", file_path="tmp/f.txt")
    assert not read.success and "No such file: /workspace/tmp/f.txt" in read.output
    missing = await box.call("delete_file", file_path="tmp/f.txt")
    assert not missing.success and "No such file" in missing.output
    root = await box.call("delete_file", file_path="/workspace/")
    assert not root.success and "/workspace itself" in root.output


async def test_read_file_line_ranges(box: SandboxHarness, fake: ScriptedSandbox) -> None:
    await fake.write_file("box1", "n.txt", "".join(f"l{i}\n" for i in range(1, 11)).encode())
    middle = await box.call("read_file", file_path="n.txt", start_line=3, end_line=5)
    assert middle.output == "l3\nl4\nl5\n"
    assert middle.metadata["total_lines"] == 10
    tail = await box.call("read_file", file_path="n.txt", start_line=9)
    assert tail.output == "l9\nl10\n"
    head = await box.call("read_file", file_path="n.txt", end_line=1)
    assert head.output == "l1\n"
    past = await box.call("read_file", file_path="n.txt", end_line=99, start_line=10)
    assert past.output == "l10\n"

    backwards = await box.call("read_file", file_path="n.txt", start_line=5, end_line=2)
    assert not backwards.success and "before start_line" in backwards.output
    beyond = await box.call("read_file", file_path="n.txt", start_line=11)
    assert not beyond.success and "only 10 lines" in beyond.output
    zero = await box.call("read_file", file_path="n.txt", start_line=0)
    assert not zero.success and "start_line" in zero.output


async def test_read_file_refuses_binary_big_and_directories(fake: ScriptedSandbox) -> None:
    await fake.create(sandbox_id="box1")
    box = SandboxHarness(fake, "box1", read_file_max_bytes=2048)
    await fake.write_file("box1", "logo.png", b"\x89PNG\r\n\x1a\n\0\0binary")
    await fake.write_file("box1", "big.log", b"x" * 4096)
    await fake.write_file("box1", "latin1.txt", "café".encode("latin-1"))
    await fake.write_file("box1", "dir/f", b"")

    png = await box.call("read_file", file_path="logo.png")
    assert not png.success and "binary file (a PNG image" in png.output
    assert "see_image" in png.output
    latin = await box.call("read_file", file_path="latin1.txt")
    assert not latin.success and "binary file" in latin.output
    big = await box.call("read_file", file_path="big.log")
    assert not big.success and "4096 bytes" in big.output and "limit of 2048" in big.output
    assert "sed -n" in big.output
    edit_big = await box.call("str_replace", file_path="big.log", old_str="x", new_str="y")
    assert not edit_big.success and "limit of 2048" in edit_big.output
    directory = await box.call("read_file", file_path="dir")
    assert not directory.success and "is a directory" in directory.output


@pytest.mark.parametrize("path", ["../secret", "/etc/passwd", "a/../../b", "/workspace/../x"])
async def test_paths_outside_the_workspace_are_refused_by_every_file_tool(
    box: SandboxHarness, fake: ScriptedSandbox, path: str
) -> None:
    calls = {
        "create_file": {"file_contents": "x"},
        "str_replace": {"old_str": "a", "new_str": "b"},
        "full_file_rewrite": {"file_contents": "x"},
        "delete_file": {},
        "read_file": {},
        "see_image": {},
    }
    for name, arguments in calls.items():
        result = await box.call(name, file_path=path, **arguments)
        assert not result.success, name
        assert "is outside /workspace" in result.output, (name, result.output)
        assert "relative to /workspace" in result.output
    assert fake.calls == []


async def test_a_symlink_leading_out_is_refused(box: SandboxHarness, fake: ScriptedSandbox) -> None:
    fake.add_symlink("box1", "etc", "/etc")
    result = await box.call("read_file", file_path="etc/passwd")
    assert not result.success and "outside /workspace" in result.output
    write = await box.call("full_file_rewrite", file_path="etc/passwd", file_contents="x")
    assert not write.success and "outside /workspace" in write.output


async def test_xml_style_text_arguments_keep_their_exact_text(
    box: SandboxHarness, fake: ScriptedSandbox
) -> None:
    """A file of digits stays text (XML parameters are typed, text fields take the raw text)."""
    ctx = box.context()
    result = await box.registry.execute(
        "create_file",
        {"file_path": "n.txt", "file_contents": 42},
        ctx,
        raw_arguments={"file_path": "n.txt", "file_contents": "0042\n"},
    )
    assert result.success
    assert await fake.read_file("box1", "n.txt") == b"0042\n"
