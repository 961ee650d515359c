"""The tool registry: what is offered to the model, and the one safe way to call it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from shoal.tools.base import Tool, ToolContext, ToolResult
from shoal.tools.schema import ToolFunction, build_function

DEFAULT_MAX_OUTPUT_CHARS = 200_000

XML_INSTRUCTIONS_HEADER = """\
## Tools
You can call tools by writing XML in your answer, in exactly this format:

<function_calls>
<invoke name="tool_name">
<parameter name="param_name">value</parameter>
</invoke>
</function_calls>

Several <invoke> blocks may go inside one <function_calls> block. Parameter values are plain
text; JSON objects and arrays, numbers and true/false are read as such. After your calls you
receive <tool_result> blocks with the outputs. Available tools:
"""


def clip_text(text: str, limit: int, *, note: str = "") -> tuple[str, bool]:
    """Keep the head and tail of ``text`` within ``limit`` characters, marking the cut."""
    if len(text) <= limit:
        return text, False
    head = max(0, limit * 2 // 3)
    tail = max(0, limit - head)
    omitted = len(text) - head - tail
    marker = f"\n\n[… {omitted} characters clipped{note} …]\n\n"
    return text[:head] + marker + (text[-tail:] if tail else ""), True


class ToolRegistry:
    """Tool functions by name. Never raises for a bad call: it returns a failed ToolResult."""

    def __init__(
        self, tools: Iterable[Tool] = (), *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    ) -> None:
        self.max_output_chars = max_output_chars
        self._functions: dict[str, ToolFunction] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool, *, only: Iterable[str] | None = None) -> None:
        """Add the tool's functions (all, or those named in ``only``) if it is available."""
        if not tool.is_available():
            return
        wanted = set(only) if only is not None else None
        for name, (spec, handler) in tool.declared().items():
            if wanted is None or name in wanted:
                self._functions[name] = build_function(name, spec, handler)

    def select(self, names: Iterable[str] | None) -> ToolRegistry:
        """A registry with only ``names`` (unknown names are ignored; ``None`` keeps all)."""
        subset = ToolRegistry(max_output_chars=self.max_output_chars)
        keep = set(names) if names is not None else None
        subset._functions = {n: f for n, f in self._functions.items() if keep is None or n in keep}
        return subset

    @property
    def names(self) -> list[str]:
        return list(self._functions)

    def get(self, name: str) -> ToolFunction | None:
        return self._functions.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __len__(self) -> int:
        return len(self._functions)

    def is_terminating(self, name: str) -> bool:
        function = self._functions.get(name)
        return bool(function and function.terminating)

    def openai_schemas(self) -> list[dict[str, Any]]:
        return [f.openai_schema() for f in self._functions.values()]

    def xml_instructions(self) -> str:
        """Tool instructions for the system prompt in XML-calling mode."""
        if not self._functions:
            return ""
        parts = [XML_INSTRUCTIONS_HEADER]
        for function in self._functions.values():
            params = json.dumps(function.parameters_schema().get("properties", {}))
            parts.append(
                f"### {function.name}\n{function.description}\nParameters (JSON schema): "
                f"{params}\nExample:\n{function.xml_example}\n"
            )
        return "\n".join(parts)

    async def execute(
        self,
        name: str,
        arguments: Mapping[str, Any] | str | None,
        ctx: ToolContext,
        *,
        raw_arguments: Mapping[str, str] | None = None,
    ) -> ToolResult:
        """Validate and run one call; time it and clip its output.

        ``arguments`` is a dict or a JSON string (native calls). ``raw_arguments`` are the
        untyped texts of XML parameters: text-typed parameters take them verbatim.
        """
        started = time.perf_counter()
        result = await self._execute(name, arguments, ctx, raw_arguments)
        result.duration_ms = int((time.perf_counter() - started) * 1000)
        result.output, clipped = clip_text(result.output, self.max_output_chars)
        if clipped:
            result.metadata["output_clipped"] = True
        return result

    async def _execute(
        self,
        name: str,
        arguments: Mapping[str, Any] | str | None,
        ctx: ToolContext,
        raw_arguments: Mapping[str, str] | None,
    ) -> ToolResult:
        function = self._functions.get(name)
        if function is None:
            available = ", ".join(self._functions) or "none"
            return ToolResult.fail(f"Unknown tool `{name}`. Available tools: {available}.")
        parsed = _parse_arguments(arguments)
        if isinstance(parsed, str):
            return ToolResult.fail(f"Invalid arguments for `{name}`: {parsed}")
        for field_name in function.text_fields:
            if raw_arguments and field_name in raw_arguments:
                parsed[field_name] = raw_arguments[field_name]
        try:
            validated = function.args_model.model_validate(parsed)
        except ValidationError as exc:
            return ToolResult.fail(f"Invalid arguments for `{name}`: {_explain(exc)}")
        kwargs = {key: getattr(validated, key) for key in type(validated).model_fields}
        try:
            if function.takes_context:
                outcome = await function.handler(ctx, **kwargs)
            else:
                outcome = await function.handler(**kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return ToolResult.fail(f"Tool `{name}` failed: {type(exc).__name__}: {exc}")
        return _as_result(outcome)


def _parse_arguments(arguments: Mapping[str, Any] | str | None) -> dict[str, Any] | str:
    if arguments is None:
        return {}
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            arguments = json.loads(arguments)
        except ValueError as exc:
            return f"the arguments are not valid JSON ({exc}). Send a JSON object."
    if not isinstance(arguments, Mapping):
        return "the arguments must be a JSON object of parameter names to values."
    return dict(arguments)


def _explain(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:10]:
        location = ".".join(str(part) for part in error["loc"]) or "arguments"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unexpected parameter"
        problems.append(f"{location}: {message}")
    return "; ".join(problems)


def _as_result(outcome: Any) -> ToolResult:
    if isinstance(outcome, ToolResult):
        return outcome
    if outcome is None:
        return ToolResult.ok("")
    if isinstance(outcome, str):
        return ToolResult.ok(outcome)
    try:
        return ToolResult.ok(json.dumps(outcome, default=str))
    except (TypeError, ValueError):
        return ToolResult.ok(str(outcome))
