"""``see_image``: show the model an image from the sandbox's workspace.

The image travels to the model on its NEXT call only: the result's metadata carries the base64
payload under :data:`IMAGE_PAYLOAD_KEY`, which the engine pops before the tool message is
stored (so stored messages and ``message`` events stay small) and attaches to the next prompt as
a user message with an ``image_url`` part. The stored message keeps ``metadata.image``
(``mime_type``, ``path``, ``size``), so later prompts still say which image was looked at.
"""

from __future__ import annotations

import base64
from typing import Any

from shoal.tools.base import Tool, ToolContext, ToolResult, tool_function
from shoal.tools.sandbox_access import (
    ToolFailure,
    file_entry,
    open_sandbox,
    reports_failures,
    workspace_path,
)

IMAGE_PAYLOAD_KEY = "image_payload"
"""Metadata key of ``{"mime_type", "data"}`` (base64): transient, never stored."""


def image_mime_type(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, GIF or WebP image, by its magic bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class ImageTool(Tool):
    """``see_image`` against ``ctx.sandbox``; images larger than ``max_bytes`` are refused."""

    def __init__(self, *, max_bytes: int = 5 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes

    @tool_function
    @reports_failures
    async def see_image(self, ctx: ToolContext, file_path: str) -> ToolResult:
        """Look at an image file (PNG, JPEG, GIF or WebP) from the workspace: it is shown to
        you right after this call.

        Args:
            file_path: path of the image, relative to /workspace
        """
        path = workspace_path(file_path)
        box, sandbox_id = await open_sandbox(ctx)
        entry = await file_entry(box, sandbox_id, path)
        if entry is None:
            raise ToolFailure(f"No such file: {path}")
        if entry.is_dir:
            raise ToolFailure(f"{path} is a directory, not an image.")
        if entry.size > self.max_bytes:
            raise ToolFailure(_too_big(path, entry.size, self.max_bytes))
        data = await box.provider.read_file(sandbox_id, path)
        if len(data) > self.max_bytes:
            raise ToolFailure(_too_big(path, len(data), self.max_bytes))
        mime_type = image_mime_type(data)
        if mime_type is None:
            raise ToolFailure(f"{path} is not a PNG, JPEG, GIF or WebP image.")
        image: dict[str, Any] = {"mime_type": mime_type, "path": path, "size": len(data)}
        payload = {"mime_type": mime_type, "data": base64.b64encode(data).decode("ascii")}
        return ToolResult.ok(
            f"Loaded {path} ({mime_type}, {len(data)} bytes); the image follows.",
            image=image,
            **{IMAGE_PAYLOAD_KEY: payload},
        )


def _too_big(path: str, size: int, limit: int) -> str:
    return (
        f"{path} is {size} bytes; see_image accepts images up to {limit} bytes. Make a smaller "
        "copy first (e.g. with execute_command: python3 + PIL, or ImageMagick `convert -resize`)."
    )
