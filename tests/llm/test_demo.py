"""The demo model's intents and labelling."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shoal.llm.demo import DemoChatModel
from shoal.llm.types import ChatRequest, Finish, TextDelta, ToolCallDelta

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": {p: {"type": "string"} for p in params}},
        },
    }
    for name, params in (
        ("execute_command", ["command"]),
        ("create_file", ["file_path", "file_contents"]),
        ("read_file", ["file_path"]),
    )
]


async def answer(text: str, tools: list[dict[str, Any]] | None = TOOLS) -> tuple[str, Any, str]:
    request = ChatRequest(
        model="shoal/demo", messages=[{"role": "user", "content": text}], tools=tools
    )
    out, call, finish = "", None, ""
    async for chunk in DemoChatModel().stream(request):
        if isinstance(chunk, TextDelta):
            out += chunk.text
        elif isinstance(chunk, ToolCallDelta):
            call = (chunk.name, json.loads(chunk.arguments))
        elif isinstance(chunk, Finish):
            finish = chunk.reason
    return out, call, finish


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("please run `ls -la`", ("execute_command", {"command": "ls -la"})),
        ("run: echo hi", ("execute_command", {"command": "echo hi"})),
        ("execute pwd", ("execute_command", {"command": "pwd"})),
        (
            "write a file notes.txt with content hello there",
            ("create_file", {"file_path": "notes.txt", "file_contents": "hello there"}),
        ),
        ("read the file notes.txt", ("read_file", {"file_path": "notes.txt"})),
    ],
)
async def test_intents_become_native_tool_calls(prompt: str, expected: Any) -> None:
    text, call, finish = await answer(prompt)
    assert text.startswith("[shoal demo model]")
    assert call == expected
    assert finish == "tool_calls"


async def test_plain_chat_is_labelled_and_has_no_call() -> None:
    text, call, finish = await answer("hello, who are you?")
    assert text.startswith("[shoal demo model]") and "demo" in text
    assert call is None and finish == "stop"


async def test_summarises_a_tool_result() -> None:
    request = ChatRequest(
        model="shoal/demo",
        messages=[
            {"role": "user", "content": "run `ls`"},
            {"role": "tool", "tool_call_id": "c", "name": "execute_command", "content": "a.txt"},
        ],
        tools=TOOLS,
    )
    text = "".join(
        [c.text async for c in DemoChatModel().stream(request) if isinstance(c, TextDelta)]
    )
    assert "execute_command" in text and "a.txt" in text


def test_sizing_without_litellm() -> None:
    model = DemoChatModel()
    assert model.count_tokens("shoal/demo", [{"role": "user", "content": "x" * 400}]) > 50
    assert model.context_window("shoal/demo") > 0
