"""Built-in tools (names are contract, DESIGN.md §5)."""

from shoal.tools.builtin.files import FilesTool
from shoal.tools.builtin.image import IMAGE_PAYLOAD_KEY, ImageTool
from shoal.tools.builtin.message import ExpandMessageTool, InteractionTool
from shoal.tools.builtin.shell import ShellTool
from shoal.tools.builtin.web import ScrapeWebpageTool, WebSearchTool

__all__ = [
    "IMAGE_PAYLOAD_KEY",
    "ExpandMessageTool",
    "FilesTool",
    "ImageTool",
    "InteractionTool",
    "ScrapeWebpageTool",
    "ShellTool",
    "WebSearchTool",
]
