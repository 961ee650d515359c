"""Tools offered to agents: the ``Tool`` base, the registry and the built-ins.

A later tool (e.g. the sandbox's ``execute_command``) plugs in by subclassing :class:`Tool`,
declaring async methods with :func:`tool_function`, and being passed to
:func:`build_tool_registry` via ``extra_tools`` (it reads its handle from ``ctx.sandbox``).
"""

from shoal.tools.base import (
    MessageReader,
    OutputEmitter,
    Tool,
    ToolContext,
    ToolResult,
    tool_function,
)
from shoal.tools.defaults import build_tool_registry, builtin_tools
from shoal.tools.registry import ToolRegistry, clip_text
from shoal.tools.schema import ToolFunction

__all__ = [
    "MessageReader",
    "OutputEmitter",
    "Tool",
    "ToolContext",
    "ToolFunction",
    "ToolRegistry",
    "ToolResult",
    "build_tool_registry",
    "builtin_tools",
    "clip_text",
    "tool_function",
]
