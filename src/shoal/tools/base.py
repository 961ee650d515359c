"""Tools: classes whose async methods, marked with :func:`tool_function`, are offered to models.

A tool function's schema comes from its type-hinted signature and its docstring — the same
source renders the OpenAI function schema, the XML usage example and the argument validator::

    class Greeter(Tool):
        @tool_function
        async def greet(self, ctx: ToolContext, name: str, times: int = 1) -> ToolResult:
            '''Greet someone.

            Args:
                name: who to greet
                times: how often
            '''
            return ToolResult.ok("hello " * times + name)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, overload

ToolHandler = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=ToolHandler)


class MessageReader(Protocol):
    """What tools may read of the thread's stored messages (the engine's MessageStore has it)."""

    async def get_message(self, thread_id: str, message_id: str) -> dict[str, Any] | None: ...


OutputEmitter = Callable[[str, str], Awaitable[None]]
"""``await emit(stream, text)``: live output of a running tool (``stdout``/``stderr``)."""


async def _discard_output(stream: str, text: str) -> None:
    return None


@dataclass(slots=True)
class ToolContext:
    """Everything a tool call may use besides its arguments.

    ``sandbox`` is the seam for sandbox tools (a provider handle for the thread's project);
    ``extras`` carries anything else a later tool needs without changing this class.
    """

    thread_id: str
    tool_call_id: str = ""
    run_id: str | None = None
    messages: MessageReader | None = None
    emit_output: OutputEmitter = _discard_output
    sandbox: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolResult:
    """The outcome the model reads: ``output`` is always text."""

    success: bool
    output: str
    duration_ms: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, output: str, **metadata: Any) -> ToolResult:
        return cls(True, output, metadata=dict(metadata))

    @classmethod
    def fail(cls, output: str, **metadata: Any) -> ToolResult:
        return cls(False, output, metadata=dict(metadata))


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What :func:`tool_function` records on a method."""

    name: str | None = None
    terminating: bool = False
    description: str | None = None
    xml_example: str | None = None


SPEC_ATTRIBUTE = "__shoal_tool__"


@overload
def tool_function(fn: F, /) -> F: ...


@overload
def tool_function(
    *,
    name: str | None = None,
    terminating: bool = False,
    description: str | None = None,
    xml_example: str | None = None,
) -> Callable[[F], F]: ...


def tool_function(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    terminating: bool = False,
    description: str | None = None,
    xml_example: str | None = None,
) -> F | Callable[[F], F]:
    """Declare an async method as a tool function.

    ``terminating`` tools end the run after they execute (``ask``, ``complete``);
    ``xml_example`` replaces the generated XML usage example.
    """
    spec = ToolSpec(name, terminating, description, xml_example)

    def mark(target: F) -> F:
        is_async: bool = inspect.iscoroutinefunction(target)
        if not is_async:
            raise TypeError(f"tool function {target.__qualname__} must be async")
        setattr(target, SPEC_ATTRIBUTE, spec)
        return target

    if fn is not None:
        return mark(fn)
    return mark


class Tool:
    """Base of tool classes. Subclasses declare methods with :func:`tool_function`."""

    def is_available(self) -> bool:
        """False hides every function of this tool (e.g. ``web_search`` without an API key)."""
        return True

    def declared(self) -> Mapping[str, tuple[ToolSpec, ToolHandler]]:
        """Bound tool functions by declared name, in definition order."""
        out: dict[str, tuple[ToolSpec, ToolHandler]] = {}
        for klass in reversed(type(self).__mro__):
            for attr, value in vars(klass).items():
                spec = getattr(value, SPEC_ATTRIBUTE, None)
                if isinstance(spec, ToolSpec):
                    out[spec.name or attr] = (spec, getattr(self, attr))
        return out
