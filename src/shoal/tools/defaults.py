"""Assembling the registry an agent run gets from settings and the agent's tool list."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from shoal.tools.base import Tool
from shoal.tools.builtin.message import ExpandMessageTool, InteractionTool
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


def build_tool_registry(
    settings: Settings,
    *,
    enabled: Iterable[str] | None = None,
    extra_tools: Sequence[Tool] = (),
) -> ToolRegistry:
    """The registry for one run: built-ins plus ``extra_tools`` (e.g. sandbox tools),
    restricted to ``enabled`` tool names (``None``: every available tool)."""
    registry = ToolRegistry(max_output_chars=settings.tool_output_max_chars)
    for tool in [*builtin_tools(settings), *extra_tools]:
        registry.register(tool)
    return registry.select(enabled)
