"""Files in the project sandbox's ``/workspace``: create, edit, rewrite, delete, read.

Paths are relative to ``/workspace`` or absolute under it; anything else (``..``, other absolute
paths, symlinks leading out) is refused by the provider with ``path_outside_workspace``, which
the model reads as a failed result. Text is UTF-8; binary files are named as such, not dumped.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import time
from typing import Annotated

from pydantic import Field

from shoal.tools.base import Tool, ToolContext, ToolResult, tool_function
from shoal.tools.sandbox_access import (
    SandboxAccess,
    ToolFailure,
    file_entry,
    meter_exec,
    open_sandbox,
    reports_failures,
    workspace_path,
)

_MODE = re.compile(r"^[0-7]{3,4}$")
_SNIFF_BYTES = 8192
_MAGIC_NAMES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x7fELF", "an executable"),
)


class FilesTool(Tool):
    """File tools against ``ctx.sandbox`` (a :class:`~shoal.tools.sandbox_access.SandboxAccess`)."""

    def __init__(self, *, read_max_bytes: int = 1024 * 1024) -> None:
        self.read_max_bytes = read_max_bytes

    @tool_function
    @reports_failures
    async def create_file(
        self,
        ctx: ToolContext,
        file_path: str,
        file_contents: str,
        permissions: str | None = None,
    ) -> ToolResult:
        """Create a new file (parent directories are created too). Fails if it exists.

        Args:
            file_path: path relative to /workspace, e.g. src/main.py
            file_contents: the complete text of the file
            permissions: optional octal mode, e.g. 755 for an executable script
        """
        path = workspace_path(file_path)
        mode = _mode(permissions)
        box, sandbox_id = await open_sandbox(ctx)
        existing = await file_entry(box, sandbox_id, path)
        if existing is not None:
            kind = "a directory" if existing.is_dir else "a file"
            raise ToolFailure(
                f"{path} already exists ({kind}). To change a file use str_replace for an "
                "edit or full_file_rewrite to replace all of it."
            )
        data = file_contents.encode()
        await box.provider.write_file(sandbox_id, path, data)
        await _chmod(box, sandbox_id, path, mode)
        return ToolResult.ok(f"Created {path} ({len(data)} bytes).", path=path, size=len(data))

    @tool_function
    @reports_failures
    async def str_replace(
        self, ctx: ToolContext, file_path: str, old_str: str, new_str: str
    ) -> ToolResult:
        """Replace text in a file: `old_str` must occur exactly once (copy it exactly,
        whitespace included, with enough context to be unique).

        Args:
            file_path: path relative to /workspace
            old_str: the exact text to replace
            new_str: the text to put in its place
        """
        path = workspace_path(file_path)
        if not old_str:
            raise ToolFailure("old_str is empty: give the exact text to replace.")
        box, sandbox_id = await open_sandbox(ctx)
        text = await self._read_text(box, sandbox_id, path)
        count = text.count(old_str)
        if count == 0:
            raise ToolFailure(
                f"old_str was not found in {path} (0 matches). Read the file and copy the "
                "exact text, including whitespace and indentation."
            )
        if count > 1:
            raise ToolFailure(
                f"old_str occurs {count} times in {path} ({count} matches); it must match "
                "exactly once. Include more surrounding lines to make it unique."
            )
        updated = text.replace(old_str, new_str, 1)
        await box.provider.write_file(sandbox_id, path, updated.encode())
        line = text[: text.index(old_str)].count("\n") + 1
        return ToolResult.ok(f"Replaced 1 match in {path} (at line {line}).", path=path, line=line)

    @tool_function
    @reports_failures
    async def full_file_rewrite(
        self, ctx: ToolContext, file_path: str, file_contents: str
    ) -> ToolResult:
        """Replace the whole content of a file (it is created if missing).

        Args:
            file_path: path relative to /workspace
            file_contents: the complete new text of the file
        """
        path = workspace_path(file_path)
        box, sandbox_id = await open_sandbox(ctx)
        existing = await file_entry(box, sandbox_id, path)
        if existing is not None and existing.is_dir:
            raise ToolFailure(f"{path} is a directory.")
        data = file_contents.encode()
        await box.provider.write_file(sandbox_id, path, data)
        verb = "Rewrote" if existing is not None else "Created"
        return ToolResult.ok(f"{verb} {path} ({len(data)} bytes).", path=path, size=len(data))

    @tool_function
    @reports_failures
    async def delete_file(self, ctx: ToolContext, file_path: str) -> ToolResult:
        """Delete a file (or a directory with everything in it).

        Args:
            file_path: path relative to /workspace
        """
        path = workspace_path(file_path)
        if posixpath.normpath(path) == "/workspace":
            raise ToolFailure("Refusing to delete /workspace itself.")
        box, sandbox_id = await open_sandbox(ctx)
        await box.provider.delete_file(sandbox_id, path)
        return ToolResult.ok(f"Deleted {path}.", path=path)

    @tool_function
    @reports_failures
    async def read_file(
        self,
        ctx: ToolContext,
        file_path: str,
        start_line: Annotated[int, Field(ge=1)] | None = None,
        end_line: Annotated[int, Field(ge=1)] | None = None,
    ) -> ToolResult:
        """Read a text file, whole or a range of lines (1-based, inclusive).

        Args:
            file_path: path relative to /workspace
            start_line: first line to return (default 1)
            end_line: last line to return (default: the last line)
        """
        path = workspace_path(file_path)
        if start_line and end_line and end_line < start_line:
            raise ToolFailure(f"end_line ({end_line}) is before start_line ({start_line}).")
        box, sandbox_id = await open_sandbox(ctx)
        text = await self._read_text(box, sandbox_id, path)
        lines = text.splitlines(keepends=True)
        meta: dict[str, object] = {"path": path, "total_lines": len(lines)}
        if start_line is None and end_line is None:
            return ToolResult.ok(text if text else f"({path} is empty)", **meta)
        first = start_line or 1
        last = min(end_line or len(lines), len(lines))
        if first > len(lines):
            raise ToolFailure(f"{path} has only {len(lines)} lines; start_line is {first}.")
        chosen = "".join(lines[first - 1 : last])
        return ToolResult.ok(chosen, start_line=first, end_line=last, **meta)

    async def _read_text(self, box: SandboxAccess, sandbox_id: str, path: str) -> str:
        entry = await file_entry(box, sandbox_id, path)
        if entry is None:
            raise ToolFailure(f"No such file: {path}")
        if entry.is_dir:
            raise ToolFailure(f"{path} is a directory; list it with execute_command (ls).")
        if entry.size > self.read_max_bytes:
            raise ToolFailure(_too_big(path, entry.size, self.read_max_bytes))
        data = await box.provider.read_file(sandbox_id, path)
        if len(data) > self.read_max_bytes:
            raise ToolFailure(_too_big(path, len(data), self.read_max_bytes))
        text = _decode(data)
        if text is None:
            raise ToolFailure(
                f"{path} is a binary file ({_kind(data)}, {len(data)} bytes), not text. Use "
                "see_image for images, or execute_command (e.g. `file`, `xxd | head`) to "
                "inspect it."
            )
        return text


def _mode(permissions: str | None) -> str | None:
    if permissions is None or not permissions.strip():
        return None
    mode = permissions.strip()
    if not _MODE.match(mode):
        raise ToolFailure(f"Invalid permissions {permissions!r}: give an octal mode like 644.")
    return mode


async def _chmod(box: SandboxAccess, sandbox_id: str, path: str, mode: str | None) -> None:
    if mode is None:
        return
    started = time.monotonic()
    try:
        result = await box.provider.exec(
            sandbox_id, f"chmod {mode} {shlex.quote(path)}", timeout=30
        )
    finally:
        await meter_exec(box, time.monotonic() - started)
    if not result.ok:
        raise ToolFailure(f"Created {path}, but chmod {mode} failed: {result.output.strip()}")


def _decode(data: bytes) -> str | None:
    if b"\0" in data[:_SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _kind(data: bytes) -> str:
    for magic, name in _MAGIC_NAMES:
        if data.startswith(magic):
            return name
    return "unknown format"


def _too_big(path: str, size: int, limit: int) -> str:
    return (
        f"{path} is {size} bytes, more than read_file's limit of {limit} bytes. Read parts of "
        "it with execute_command (head, tail, grep, sed -n '100,200p')."
    )
