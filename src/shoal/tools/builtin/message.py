"""Conversation tools: ``ask`` and ``complete`` (terminating) and ``expand_message``."""

from __future__ import annotations

import json

from shoal.tools.base import Tool, ToolContext, ToolResult, tool_function


class InteractionTool(Tool):
    """Ending a run: asking the user something, or declaring the task complete."""

    @tool_function(terminating=True)
    async def ask(self, text: str, attachments: list[str] | None = None) -> ToolResult:
        """Ask the user a question and wait for the answer. Ends this run.

        Args:
            text: the question or message for the user
            attachments: optional workspace file paths to show alongside
        """
        return ToolResult.ok("Question sent to the user; waiting for the answer.")

    @tool_function(terminating=True)
    async def complete(self, text: str | None = None) -> ToolResult:
        """Declare the task finished. Ends this run.

        Args:
            text: an optional closing summary for the user
        """
        return ToolResult.ok("Task marked complete.")


class ExpandMessageTool(Tool):
    """Reading a stored message in full (the prompt clips long tool outputs)."""

    @tool_function
    async def expand_message(self, ctx: ToolContext, message_id: str) -> ToolResult:
        """Read the full content of an earlier message whose output was clipped in the prompt.

        Args:
            message_id: the id named in the clipping marker
        """
        if ctx.messages is None:
            return ToolResult.fail("Messages cannot be read in this context.")
        message = await ctx.messages.get_message(ctx.thread_id, message_id.strip())
        if message is None:
            return ToolResult.fail(f"No message with id {message_id!r} in this thread.")
        content = message.get("content")
        if isinstance(content, dict) and isinstance(content.get("content"), str):
            return ToolResult.ok(content["content"])
        return ToolResult.ok(json.dumps(content, ensure_ascii=False))
