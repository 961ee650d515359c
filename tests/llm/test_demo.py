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


SANDBOX_TOOLS = [
    *TOOLS,
    {
        "type": "function",
        "function": {
            "name": "see_image",
            "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}}},
        },
    },
]


async def calls_for(text: str, tools: list[dict[str, Any]]) -> tuple[str, list[Any], str]:
    request = ChatRequest(
        model="shoal/demo", messages=[{"role": "user", "content": text}], tools=tools
    )
    out, calls, finish = "", [], ""
    async for chunk in DemoChatModel().stream(request):
        if isinstance(chunk, TextDelta):
            out += chunk.text
        elif isinstance(chunk, ToolCallDelta):
            calls.append((chunk.index, chunk.name, json.loads(chunk.arguments)))
        elif isinstance(chunk, Finish):
            finish = chunk.reason
    return out, calls, finish


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (
            "write a python script that prints hello and run it",
            [
                ("create_file", {"file_path": "hello.py", "file_contents": "print('hello')\n"}),
                ("execute_command", {"command": "python3 hello.py"}),
            ],
        ),
        (
            'Create a bash script that prints "good morning" then execute it.',
            [
                (
                    "create_file",
                    {
                        "file_path": "good_morning.sh",
                        "file_contents": "#!/usr/bin/env bash\necho 'good morning'\n",
                    },
                ),
                ("execute_command", {"command": "bash good_morning.sh"}),
            ],
        ),
        (
            "write a node script that prints 42",
            [("create_file", {"file_path": "42.js", "file_contents": 'console.log("42");\n'})],
        ),
        ("look at the image shots/home.png", [("see_image", {"file_path": "shots/home.png"})]),
    ],
)
async def test_multi_step_intents(prompt: str, expected: list[Any]) -> None:
    text, calls, finish = await calls_for(prompt, SANDBOX_TOOLS)
    assert [(name, args) for _, name, args in calls] == expected
    assert [index for index, _, _ in calls] == list(range(len(expected)))
    assert finish == "tool_calls" and text.startswith("[shoal demo model] Sure")


async def test_a_script_without_execute_command_is_only_written() -> None:
    tools: list[dict[str, Any]] = [t for t in TOOLS if "execute" not in str(t["function"])]
    text, calls, _ = await calls_for("write a python script that prints hi and run it", tools)
    assert [name for _, name, _ in calls] == ["create_file"]
    assert "`execute_command` tool is not enabled" in text


async def test_summarises_every_result_of_the_turn_and_skips_the_image_note() -> None:
    request = ChatRequest(
        model="shoal/demo",
        messages=[
            {"role": "user", "content": "look at the image a.png"},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "tool_call_id": "1", "name": "create_file", "content": "Created"},
            {"role": "tool", "tool_call_id": "2", "name": "see_image", "content": "Loaded a.png"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Image from see_image: /workspace/a.png"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QQ=="}},
                ],
            },
        ],
        tools=SANDBOX_TOOLS,
    )
    chunks = [c async for c in DemoChatModel().stream(request)]
    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert not any(isinstance(c, ToolCallDelta) for c in chunks)
    assert "`create_file` tool finished" in text and "`see_image` tool finished" in text
    assert "Loaded a.png" in text
