"""Workspace path confinement and the host-side file operations (no bubblewrap needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.errors import BadRequest, NotFound, PathOutsideWorkspace
from shoal.sandbox import WorkspaceFull
from shoal.sandbox.paths import WorkspaceFS, workspace_parts


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("", ()),
        (".", ()),
        ("/workspace", ()),
        ("/workspace/", ()),
        ("a/b", ("a", "b")),
        ("./a//b/", ("a", "b")),
        ("/workspace/a/../b", ("b",)),
        ("  spaced.txt ", ("spaced.txt",)),
        ("résumé ✓.txt", ("résumé ✓.txt",)),
    ],
)
def test_paths_inside(path: str, parts: tuple[str, ...]) -> None:
    assert workspace_parts(path) == parts


@pytest.mark.parametrize(
    "path",
    ["..", "../x", "a/../../x", "/", "/etc/passwd", "/workspace2/x", "/workspace/../x", "a\0b"],
)
def test_paths_outside(path: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        workspace_parts(path)


@pytest.fixture
def fs(tmp_path: Path) -> WorkspaceFS:
    root = tmp_path / "workspace"
    root.mkdir()
    (tmp_path / "outside.txt").write_text("host secret")
    return WorkspaceFS(root, quota_bytes=1024 * 1024, max_file_bytes=256 * 1024)


def test_symlinks_are_followed_only_inside(fs: WorkspaceFS, tmp_path: Path) -> None:
    root = fs.root
    (root / "real").mkdir()
    (root / "real" / "f.txt").write_text("inside")
    os.symlink("real", root / "rel")
    os.symlink("/workspace/real", root / "abs")  # absolute, as the sandbox sees it
    os.symlink(str(tmp_path), root / "host")  # a host path: outside for the sandbox
    os.symlink("../outside.txt", root / "up")
    os.symlink("/etc", root / "etc")
    os.symlink("loop", root / "loop")
    assert fs.read("rel/f.txt") == b"inside"
    assert fs.read("abs/f.txt") == b"inside"
    for path in ("host/outside.txt", "up", "etc/passwd"):
        with pytest.raises(PathOutsideWorkspace):
            fs.read(path)
    with pytest.raises(PathOutsideWorkspace):
        fs.write("etc/evil", b"x")
    with pytest.raises(PathOutsideWorkspace):
        fs.listdir("etc")
    with pytest.raises(BadRequest, match="symbolic links"):
        fs.read("loop")
    fs.delete("etc")  # the link itself
    assert not (root / "etc").is_symlink()
    assert (tmp_path / "outside.txt").read_text() == "host secret"


def test_write_replaces_instead_of_writing_through_hardlinks(fs: WorkspaceFS) -> None:
    (fs.root / "a.txt").write_text("original")
    os.link(fs.root / "a.txt", fs.root / "b.txt")
    fs.write("b.txt", b"new")
    assert (fs.root / "a.txt").read_text() == "original"
    assert fs.read("b.txt") == b"new"


def test_limits_and_errors(fs: WorkspaceFS) -> None:
    with pytest.raises(WorkspaceFull):
        fs.write("big.bin", b"\0" * (256 * 1024 + 1))
    for index in range(4):
        fs.write(f"chunk{index}.bin", os.urandom(250 * 1024))
    with pytest.raises(WorkspaceFull):
        fs.write("one-more.bin", os.urandom(250 * 1024))
    fs.write("chunk0.bin", os.urandom(250 * 1024))  # same size: replacing is fine
    with pytest.raises(NotFound):
        fs.read("missing.txt")
    with pytest.raises(BadRequest):
        fs.read("/workspace")
    with pytest.raises(BadRequest):
        fs.delete("/workspace")
    fs.write("dir/file.txt", b"x")
    with pytest.raises(BadRequest):
        fs.write("dir", b"x")
    with pytest.raises(BadRequest):
        fs.write("dir/file.txt/below", b"x")
    os.mkfifo(fs.root / "fifo")
    with pytest.raises(BadRequest, match="not a regular file"):
        fs.read("fifo")  # and it did not block
    assert not any(name.endswith(".shoal-tmp") for name in os.listdir(fs.root))


def test_new_files_are_given_to_the_owner(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    fs = WorkspaceFS(tmp_path, owner=(4242, 4343))
    fs.write("d/e/f.txt", b"x")
    for path in ("d", "d/e", "d/e/f.txt"):
        info = (tmp_path / path).stat()
        assert (info.st_uid, info.st_gid) == (4242, 4343), path
