"""Tool declaration, schemas, validation and execution."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import pytest
from pydantic import Field

from shoal.tools import Tool, ToolContext, ToolRegistry, ToolResult, tool_function
from shoal.tools.builtin import ExpandMessageTool, InteractionTool
from shoal.tools.schema import parse_docstring

CTX = ToolContext(thread_id="t")


class Files(Tool):
    @tool_function
    async def write(
        self,
        ctx: ToolContext,
        path: str,
        content: str,
        mode: Literal["w", "a"] = "w",
        lines: Annotated[int, Field(ge=0)] = 0,
        tags: list[str] | None = None,
    ) -> ToolResult:
        """Write a file.

        Longer explanation.

        Args:
            path: where to write
            content: what to write,
                possibly long
        """
        await ctx.emit_output("stdout", "writing\n")
        return ToolResult.ok(f"{path}:{content}:{mode}:{lines}:{tags}")

    @tool_function(name="explode", terminating=True, xml_example="<custom/>")
    async def boom(self) -> str:
        """Always fails."""
        raise RuntimeError("kaboom")

    @tool_function
    async def huge(self) -> str:
        """Big output."""
        return "z" * 5000

    @tool_function
    async def structured(self, n: int) -> dict[str, int]:
        """Returns JSON."""
        return {"n": n}


class Hidden(Tool):
    def is_available(self) -> bool:
        return False

    @tool_function
    async def secret(self) -> str:
        """Never offered."""
        return ""


@pytest.fixture
def reg() -> ToolRegistry:
    return ToolRegistry([Files(), Hidden()], max_output_chars=1000)


def test_schema_from_signature_and_docstring(reg: ToolRegistry) -> None:
    assert reg.names == ["write", "explode", "huge", "structured"]
    schema = next(s for s in reg.openai_schemas() if s["function"]["name"] == "write")
    function = schema["function"]
    assert function["description"] == "Write a file.\n\nLonger explanation."
    params = function["parameters"]
    assert params["required"] == ["path", "content"]
    assert params["properties"]["content"]["description"] == "what to write, possibly long"
    assert params["properties"]["mode"]["enum"] == ["w", "a"]
    assert params["properties"]["lines"]["minimum"] == 0
    assert params["additionalProperties"] is False
    assert "ctx" not in params["properties"]
    assert reg.is_terminating("explode") and not reg.is_terminating("write")


def test_every_prompt_gets_its_own_schemas(reg: ToolRegistry) -> None:
    """Providers' adapters may edit the schemas they are given; that must not leak into the
    next run's prompt."""
    first = reg.openai_schemas()
    first[0]["function"]["parameters"]["properties"]["path"]["description"] = "edited"
    first[0]["function"]["parameters"]["required"].append("extra")
    second = reg.openai_schemas()
    assert second[0]["function"]["parameters"]["properties"]["path"].get("description") != "edited"
    assert "extra" not in second[0]["function"]["parameters"]["required"]


def test_xml_usage_examples(reg: ToolRegistry) -> None:
    text = reg.xml_instructions()
    assert '<invoke name="write">' in text
    assert '<parameter name="path">…</parameter>' in text
    assert '<parameter name="mode">' not in text  # optional parameters are not in the example
    assert "<custom/>" in text


async def test_valid_call_runs_and_is_timed(reg: ToolRegistry) -> None:
    out: list[str] = []

    async def emit(stream: str, text: str) -> None:
        out.append(text)

    ctx = ToolContext(thread_id="t", emit_output=emit)
    result = await reg.execute("write", '{"path": "a", "content": "b", "lines": 3}', ctx)
    assert result.success and result.output == "a:b:w:3:None"
    assert result.duration_ms >= 0 and out == ["writing\n"]


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ('{"path": "a"', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"path": "a"}, "content: Field required"),
        ({"path": "a", "content": "b", "mode": "x"}, "mode:"),
        ({"path": "a", "content": "b", "lines": -1}, "lines:"),
        ({"path": "a", "content": "b", "bogus": 1}, "bogus: unexpected parameter"),
    ],
)
async def test_bad_arguments_give_failed_results(
    reg: ToolRegistry, arguments: object, needle: str
) -> None:
    result = await reg.execute("write", arguments, CTX)  # type: ignore[arg-type]
    assert not result.success and needle in result.output


async def test_unknown_tool_and_crashing_tool(reg: ToolRegistry) -> None:
    unknown = await reg.execute("nope", {}, CTX)
    assert not unknown.success and "Available tools: write, explode" in unknown.output
    crashed = await reg.execute("explode", None, CTX)
    assert not crashed.success and "RuntimeError: kaboom" in crashed.output


async def test_outputs_are_clipped_and_serialised(reg: ToolRegistry) -> None:
    huge = await reg.execute("huge", {}, CTX)
    assert huge.success and len(huge.output) < 1100 and "characters clipped" in huge.output
    assert huge.metadata["output_clipped"] is True
    structured = await reg.execute("structured", {"n": "5"}, CTX)
    assert structured.output == '{"n": 5}'


async def test_numbers_coerce_to_text_and_raw_xml_text_wins(reg: ToolRegistry) -> None:
    result = await reg.execute(
        "write", {"path": 12, "content": 7}, CTX, raw_arguments={"content": "007"}
    )
    assert result.success and result.output.startswith("12:007:")


async def test_cancellation_propagates() -> None:
    class Slow(Tool):
        @tool_function
        async def wait(self) -> str:
            """Waits."""
            await asyncio.sleep(10)
            return ""

    task = asyncio.create_task(ToolRegistry([Slow()]).execute("wait", {}, CTX))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_sync_methods_are_rejected() -> None:
    with pytest.raises(TypeError):

        class Bad(Tool):
            @tool_function  # type: ignore[type-var]
            def sync(self) -> str:
                return ""


def test_parse_docstring() -> None:
    summary, params = parse_docstring("Do it.\n\nArgs:\n    a: first\n    b (int): second\n")
    assert summary == "Do it." and params == {"a": "first", "b": "second"}


async def test_interaction_and_expand_tools() -> None:
    reg = ToolRegistry([InteractionTool(), ExpandMessageTool()])
    assert reg.is_terminating("ask") and reg.is_terminating("complete")
    assert (await reg.execute("ask", {"text": "Which?"}, CTX)).success
    missing = await reg.execute("expand_message", {"message_id": "m1"}, CTX)
    assert not missing.success

    class Store:
        async def get_message(self, thread_id: str, message_id: str) -> dict[str, object] | None:
            if message_id != "m1":
                return None
            return {"content": {"role": "tool", "content": "full output"}}

    ctx = ToolContext(thread_id="t", messages=Store())
    assert (await reg.execute("expand_message", {"message_id": "m1"}, ctx)).output == "full output"
    assert not (await reg.execute("expand_message", {"message_id": "m2"}, ctx)).success
