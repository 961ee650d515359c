"""Workspace paths: confinement rules and host-side file operations that cannot escape.

Paths are parsed lexically first (``/workspace/a``, ``a``, ``./a`` and ``a/../b`` are fine;
anything that lands outside ``/workspace`` is refused). Host-side operations then walk the
directory tree one component at a time with ``openat(…, O_NOFOLLOW)``: a symlink is never
followed by the kernel, only re-interpreted by us as a path *inside the sandbox* (an absolute
target is read relative to the sandbox's ``/``) and refused when it leads out. A symlink swapped
in between two steps therefore cannot redirect an operation outside the workspace.

The functions here block; async callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from shoal.errors import BadRequest, PathOutsideWorkspace
from shoal.sandbox.base import WORKSPACE, FileEntry, FileNotFoundInSandbox, WorkspaceFull

_MAX_SYMLINK_HOPS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def workspace_parts(path: str) -> tuple[str, ...]:
    """``path`` as components below ``/workspace`` (``()`` is the workspace itself)."""
    if "\0" in path:
        raise PathOutsideWorkspace("Paths may not contain NUL bytes.")
    raw = path.strip() or "."
    if raw.startswith("/"):
        normal = posixpath.normpath(raw)
        if normal == WORKSPACE:
            return ()
        if not normal.startswith(WORKSPACE + "/"):
            raise PathOutsideWorkspace(f"{path!r} is outside {WORKSPACE}.")
        raw = normal[len(WORKSPACE) + 1 :]
    normal = posixpath.normpath(raw)
    if normal == ".":
        return ()
    if normal == ".." or normal.startswith("../") or normal.startswith("/"):
        raise PathOutsideWorkspace(f"{path!r} is outside {WORKSPACE}.")
    return tuple(normal.split("/"))


def sandbox_path(parts: tuple[str, ...] | list[str]) -> str:
    """The absolute in-sandbox path of ``parts``."""
    return posixpath.join(WORKSPACE, *parts) if parts else WORKSPACE


def follow_symlink(done: list[str], target: str, rest: list[str]) -> list[str]:
    """Where a symlink found after ``done`` leads, as workspace components (or refuse)."""
    if target.startswith("/"):
        base = list(workspace_parts(target))
    else:
        base = list(workspace_parts("/".join([*done, target]) if done else target))
    return [*base, *rest]


class WorkspaceFS:
    """File operations on a workspace directory on the host, confined to it.

    New files and directories are given to ``owner`` (uid, gid) when set — the sandbox's host
    uid, so the sandbox can change them. ``quota_bytes`` (soft: checked before each write) and
    ``max_file_bytes`` bound what a write may add; the filesystem's own ``ENOSPC`` (a size-limited
    workspace image) is reported the same way.
    """

    def __init__(
        self,
        root: Path,
        *,
        owner: tuple[int, int] | None = None,
        quota_bytes: int | None = None,
        max_file_bytes: int | None = None,
    ) -> None:
        self.root = root
        self.owner = owner
        self.quota_bytes = quota_bytes
        self.max_file_bytes = max_file_bytes

    # -- resolution ----------------------------------------------------------------------------

    def _resolve(
        self, path: str, *, follow_last: bool, create_dirs: bool = False
    ) -> tuple[int, str | None, list[str]]:
        """An open fd of the parent directory, the final name (``None`` for the root) and the
        resolved components. The caller closes the fd."""
        pending = list(workspace_parts(path))
        for _hop in range(_MAX_SYMLINK_HOPS):
            redirected = self._walk(pending, follow_last=follow_last, create_dirs=create_dirs)
            if isinstance(redirected, list):
                pending = redirected
                continue
            fd, name = redirected
            return fd, name, pending
        raise BadRequest(f"Too many levels of symbolic links: {path}")

    def _walk(
        self, parts: list[str], *, follow_last: bool, create_dirs: bool
    ) -> tuple[int, str | None] | list[str]:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for index, name in enumerate(parts):
                last = index == len(parts) - 1
                info = _lstat(name, fd)
                if info is not None and stat.S_ISLNK(info.st_mode) and (follow_last or not last):
                    return follow_symlink(
                        parts[:index], os.readlink(name, dir_fd=fd), parts[index + 1 :]
                    )
                if last:
                    return fd, name
                if info is None:
                    if not create_dirs:
                        raise FileNotFoundInSandbox(sandbox_path(parts))
                    self._mkdir(name, fd)
                next_fd = self._open_dir(name, fd, parts[: index + 1])
                os.close(fd)
                fd = next_fd
            return fd, None
        except BaseException:
            os.close(fd)
            raise

    def _open_dir(self, name: str, dir_fd: int, parts: list[str]) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            raise FileNotFoundInSandbox(sandbox_path(parts)) from None
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise BadRequest(f"Not a directory: {sandbox_path(parts)}") from None
            raise

    def _mkdir(self, name: str, dir_fd: int) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=dir_fd)
            if self.owner is not None:
                os.chown(name, *self.owner, dir_fd=dir_fd, follow_symlinks=False)

    @contextlib.contextmanager
    def _dir(self, path: str) -> Iterator[tuple[int, list[str]]]:
        """An fd of the directory at ``path`` (symlinks followed within the workspace)."""
        parent, name, parts = self._resolve(path, follow_last=True)
        if name is None:
            fd = parent
        else:
            try:
                fd = self._open_dir(name, parent, parts)
            finally:
                os.close(parent)
        try:
            yield fd, parts
        finally:
            os.close(fd)

    # -- operations ----------------------------------------------------------------------------

    def listdir(self, path: str = WORKSPACE) -> list[FileEntry]:
        with self._dir(path) as (fd, parts):
            entries = []
            with os.scandir(fd) as it:
                for entry in it:
                    info = entry.stat(follow_symlinks=False)
                    is_dir = stat.S_ISDIR(info.st_mode)
                    entries.append(_entry(entry.name, [*parts, entry.name], info, is_dir))
        return sorted(entries, key=lambda e: (not e.is_dir, e.name))

    def read(self, path: str) -> bytes:
        parent, name, parts = self._resolve(path, follow_last=True)
        try:
            if name is None:
                raise BadRequest(f"Is a directory: {WORKSPACE}")
            fd = self._open_file(name, parent, parts, os.O_RDONLY)
        finally:
            os.close(parent)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def write(self, path: str, data: bytes) -> FileEntry:
        if self.max_file_bytes is not None and len(data) > self.max_file_bytes:
            raise WorkspaceFull(f"File larger than the limit of {self.max_file_bytes} bytes.")
        parent, name, parts = self._resolve(path, follow_last=True, create_dirs=True)
        try:
            if name is None:
                raise BadRequest(f"Is a directory: {WORKSPACE}")
            existing = _lstat(name, parent)
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise BadRequest(f"Is a directory: {sandbox_path(parts)}")
            self._check_quota(len(data) - (existing.st_size if existing else 0))
            self._replace(parent, name, data)
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            return _entry(name, parts, info, False)
        finally:
            os.close(parent)

    def delete(self, path: str) -> None:
        parent, name, parts = self._resolve(path, follow_last=False)
        try:
            if name is None:
                raise BadRequest(f"Refusing to delete {WORKSPACE} itself.")
            info = _lstat(name, parent)
            if info is None:
                raise FileNotFoundInSandbox(sandbox_path(parts))
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
        finally:
            os.close(parent)

    def usage_bytes(self) -> int:
        """Disk space the workspace uses (allocated blocks; symlinks are not followed)."""
        total = 0
        for _dir, _subdirs, files, dir_fd in os.fwalk(self.root):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_blocks * 512
        return total

    # -- helpers -------------------------------------------------------------------------------

    def _open_file(self, name: str, parent: int, parts: list[str], flags: int) -> int:
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
        except FileNotFoundError:
            raise FileNotFoundInSandbox(sandbox_path(parts)) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PathOutsideWorkspace(f"{sandbox_path(parts)} changed under us.") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise BadRequest(f"{sandbox_path(parts)} is {kind}.")
        os.set_blocking(fd, True)
        return fd

    def _check_quota(self, growth: int) -> None:
        if self.quota_bytes is None or growth <= 0:
            return
        if self.usage_bytes() + growth > self.quota_bytes:
            raise WorkspaceFull(
                f"The workspace size limit ({self.quota_bytes // 2**20} MiB) would be exceeded."
            )

    def _replace(self, parent: int, name: str, data: bytes) -> None:
        """Write to a temporary sibling, then rename over ``name`` (never through a link).
        A replaced regular file keeps its permission bits (an edited script stays executable)."""
        temp = f".{name[:200]}.{uuid.uuid4().hex[:8]}.shoal-tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        old = _lstat(name, parent)
        mode = stat.S_IMODE(old.st_mode) if old and stat.S_ISREG(old.st_mode) else 0o644
        fd = os.open(temp, flags, 0o600, dir_fd=parent)
        try:
            if self.owner is not None:
                os.fchown(fd, *self.owner)
            os.fchmod(fd, mode & 0o7777 & ~0o6000)  # never setuid/setgid
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.close(fd)
            fd = -1
            os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=parent)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise WorkspaceFull(f"The workspace is full: {exc.strerror}.") from None
            raise


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _entry(name: str, parts: list[str], info: os.stat_result, is_dir: bool) -> FileEntry:
    return FileEntry(
        name=name,
        path=sandbox_path(parts),
        is_dir=is_dir,
        size=0 if is_dir else info.st_size,
        mod_time=datetime.fromtimestamp(info.st_mtime, tz=UTC),
    )
