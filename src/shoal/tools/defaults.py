"""Assembling the registry an agent run gets from settings and the agent's tool list."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from shoal.tools.base import Tool
from shoal.tools.builtin.files import FilesTool
from shoal.tools.builtin.image import ImageTool
from shoal.tools.builtin.message import ExpandMessageTool, InteractionTool
from shoal.tools.builtin.shell import ShellTool
from shoal.tools.builtin.web import ScrapeWebpageTool, WebSearchTool
from shoal.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from shoal.config import Settings


def builtin_tools(settings: Settings) -> list[Tool]:
    """The built-in tools configured from settings (``web_search`` only with a Tavily key)."""
    return [
        InteractionTool(),
        ExpandMessageTool(),
        WebSearchTool(settings.tavily_api_key),
        ScrapeWebpageTool(
            max_bytes=settings.scrape_max_bytes,
            timeout=settings.scrape_timeout_seconds,
            max_redirects=settings.scrape_max_redirects,
        ),
    ]


def sandbox_tools(settings: Settings) -> list[Tool]:
    """The sandbox tools (commands, files, ports, images). Always offered: a call made where
    ``ctx.sandbox`` is unset fails with a clear message instead of vanishing from the list."""
    return [
        ShellTool(
            default_timeout=settings.command_timeout_seconds,
            max_timeout=settings.command_max_timeout_seconds,
            output_max_chars=settings.command_output_max_chars,
            live_output_max_chars=settings.command_live_output_max_chars,
            session_wait_seconds=settings.command_session_wait_seconds,
        ),
        FilesTool(read_max_bytes=settings.read_file_max_bytes),
        ImageTool(max_bytes=settings.see_image_max_bytes),
    ]


def build_tool_registry(
    settings: Settings,
    *,
    enabled: Iterable[str] | None = None,
    extra_tools: Sequence[Tool] = (),
) -> ToolRegistry:
    """The registry for one run: built-ins, sandbox tools and ``extra_tools``, restricted to
    ``enabled`` tool names (``None``: every available tool). An extra tool with a built-in's
    name replaces it."""
    registry = ToolRegistry(max_output_chars=settings.tool_output_max_chars)
    for tool in [*builtin_tools(settings), *sandbox_tools(settings), *extra_tools]:
        registry.register(tool)
    return registry.select(enabled)
