"""Tools offered to agents: the ``Tool`` base, the registry and the built-ins.

A tool plugs in by subclassing :class:`Tool`, declaring async methods with
:func:`tool_function`, and being passed to :func:`build_tool_registry` via ``extra_tools``.
The sandbox tools (:func:`sandbox_tools`) read the run's sandbox from ``ctx.sandbox``, a
:class:`SandboxAccess` (:class:`StaticSandbox` in tests).
"""

from shoal.tools.base import (
    MessageReader,
    OutputEmitter,
    Tool,
    ToolContext,
    ToolResult,
    tool_function,
)
from shoal.tools.defaults import build_tool_registry, builtin_tools, sandbox_tools
from shoal.tools.registry import ToolRegistry, clip_text
from shoal.tools.sandbox_access import SandboxAccess, StaticSandbox
from shoal.tools.schema import ToolFunction

__all__ = [
    "MessageReader",
    "OutputEmitter",
    "SandboxAccess",
    "StaticSandbox",
    "Tool",
    "ToolContext",
    "ToolFunction",
    "ToolRegistry",
    "ToolResult",
    "build_tool_registry",
    "builtin_tools",
    "clip_text",
    "sandbox_tools",
    "tool_function",
]
