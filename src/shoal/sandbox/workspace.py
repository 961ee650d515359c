"""Where workspaces live on the host, and how their size is limited.

*Image* mode (shoal runs as root and ``mkfs.ext4`` is installed): each workspace is a sparse
ext4 image ``<sandbox dir>/workspace.ext4`` of the configured size, loop-mounted
(``nosuid,nodev``) at ``<sandbox dir>/workspace``. The filesystem itself enforces the limit —
a command that writes past it gets ``ENOSPC`` — and the image only occupies what is used
(``discard`` gives deleted blocks back). The mount stays until the sandbox is deleted, so files
can be read while the sandbox is stopped.

*Directory* mode (otherwise): a plain directory; the limit is soft — file writes through the
provider are refused once usage would pass it, and usage is measured after every command.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from shoal.sandbox.base import SandboxError

log = structlog.get_logger(__name__)


async def _run(*argv: str, ok: tuple[int, ...] = (0,)) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode not in ok:
        raise SandboxError(f"{argv[0]} failed: {out.decode(errors='replace').strip()}")


class WorkspaceStore:
    def __init__(self, size_bytes: int, *, images: bool | None = None) -> None:
        self.size_bytes = size_bytes
        if images is None:
            images = os.geteuid() == 0 and all(
                shutil.which(tool) for tool in ("mkfs.ext4", "mount", "umount")
            )
        self.images = images

    @property
    def hard_limit(self) -> bool:
        return self.images

    async def prepare(self, sandbox_dir: Path, owner: tuple[int, int] | None) -> Path:
        """The workspace root for ``sandbox_dir`` (created, owned by ``owner``, mounted)."""
        workspace = sandbox_dir / "workspace"
        await asyncio.to_thread(workspace.mkdir, parents=True, exist_ok=True)
        if not self.images:
            if owner is not None:
                await asyncio.to_thread(os.chown, workspace, *owner)
            await asyncio.to_thread(os.chmod, workspace, 0o700)
            return workspace
        if await asyncio.to_thread(os.path.ismount, workspace):
            return workspace
        async with _locked(sandbox_dir / ".workspace.lock"):
            if not await asyncio.to_thread(os.path.ismount, workspace):
                await self._mount(sandbox_dir, workspace, owner)
        return workspace

    async def _mount(
        self, sandbox_dir: Path, workspace: Path, owner: tuple[int, int] | None
    ) -> None:
        image = sandbox_dir / "workspace.ext4"
        fresh = not await asyncio.to_thread(image.exists)
        if fresh:
            await self._make_image(image, owner)
        elif shutil.which("e2fsck"):
            await _run("e2fsck", "-p", str(image), ok=(0, 1))  # after a crash: replay, repair
        await _run(
            "mount",
            "-t",
            "ext4",
            "-o",
            "loop,nosuid,nodev,noatime,discard",
            str(image),
            str(workspace),
        )
        if fresh:
            await asyncio.to_thread(os.rmdir, workspace / "lost+found")
        await asyncio.to_thread(os.chmod, workspace, 0o700)

    async def _make_image(self, image: Path, owner: tuple[int, int] | None) -> None:
        temp = image.with_suffix(".new")
        await asyncio.to_thread(_sparse_file, temp, self.size_bytes)
        uid, gid = owner or (os.getuid(), os.getgid())
        await _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-E",
            f"root_owner={uid}:{gid},nodiscard",
            str(temp),
        )
        await asyncio.to_thread(os.replace, temp, image)

    async def release(self, sandbox_dir: Path) -> None:
        """Unmount the workspace (image mode); the files stay in the image."""
        workspace = sandbox_dir / "workspace"
        if not self.images or not await asyncio.to_thread(os.path.ismount, workspace):
            return
        try:
            await _run("umount", str(workspace))
        except SandboxError:
            log.warning("sandbox.workspace_busy", path=str(workspace))
            await _run("umount", "-l", str(workspace))


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``path``: one mount per workspace, across shoal processes."""
    fd = await asyncio.to_thread(os.open, path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _sparse_file(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        handle.truncate(size)
