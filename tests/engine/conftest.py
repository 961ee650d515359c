"""Engine fixtures: in-memory ports, a tiny tool set, and the LLM fixtures of tests/llm."""

from __future__ import annotations

import asyncio

import pytest

from shoal.engine.ports import CollectingSink, InMemoryMessageStore
from shoal.tools import Tool, ToolContext, ToolRegistry, ToolResult, tool_function
from shoal.tools.builtin import ExpandMessageTool, InteractionTool
from tests.llm.conftest import FAKE_MODEL, _litellm_offline, fake_llm, litellm_model

__all__ = ["FAKE_MODEL", "_litellm_offline", "fake_llm", "litellm_model"]


class EchoTool(Tool):
    """Test tools: echo text back, or sleep a little first."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @tool_function
    async def echo(self, text: str) -> ToolResult:
        """Echo the text back.

        Args:
            text: what to echo
        """
        self.calls.append(text)
        return ToolResult.ok(f"echo: {text}")

    @tool_function
    async def slow_echo(self, ctx: ToolContext, text: str, delay: float = 0.2) -> str:
        """Echo after a delay, streaming a line of output first.

        Args:
            text: what to echo
            delay: seconds to wait
        """
        await ctx.emit_output("stdout", f"working on {text}\n")
        await asyncio.sleep(delay)
        self.calls.append(text)
        return f"slow echo: {text}"


@pytest.fixture
def store() -> InMemoryMessageStore:
    return InMemoryMessageStore()


@pytest.fixture
def sink() -> CollectingSink:
    return CollectingSink()


@pytest.fixture
def echo_tool() -> EchoTool:
    return EchoTool()


@pytest.fixture
def registry(echo_tool: EchoTool) -> ToolRegistry:
    return ToolRegistry([echo_tool, InteractionTool(), ExpandMessageTool()])
