"""Built-in tools (names are contract). Sandbox tools (shell, files) arrive with the sandbox."""

from shoal.tools.builtin.message import ExpandMessageTool, InteractionTool
from shoal.tools.builtin.web import ScrapeWebpageTool, WebSearchTool

__all__ = ["ExpandMessageTool", "InteractionTool", "ScrapeWebpageTool", "WebSearchTool"]
