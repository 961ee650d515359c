"""see_image through the loop: the image reaches the NEXT model call only, never the store."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shoal.config import Settings
from shoal.engine import AgentConfig, CollectingSink, InMemoryMessageStore, RunOptions
from shoal.engine.prompt import build_prompt
from shoal.engine.thread_manager import ThreadManager
from shoal.llm.scripted import ScriptedChatModel, ScriptedTurn
from shoal.llm.types import ChatRequest
from shoal.sandbox import ScriptedSandbox
from shoal.tools import StaticSandbox, ToolRegistry, sandbox_tools

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
THREAD = "thread-img"


@pytest.fixture
async def sandbox() -> AsyncIterator[StaticSandbox]:
    fake = ScriptedSandbox()
    await fake.create(sandbox_id="sbx")
    await fake.write_file("sbx", "chart.png", PNG)
    await fake.write_file("sbx", "notes.md", b"# notes\n")
    yield StaticSandbox(fake, "sbx")
    await fake.aclose()


def image_parts(request: ChatRequest) -> list[dict[str, Any]]:
    return [
        part
        for message in request.messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


async def run(
    model: ScriptedChatModel, sandbox: StaticSandbox, **options: Any
) -> tuple[InMemoryMessageStore, CollectingSink]:
    store, sink = InMemoryMessageStore(), CollectingSink()
    manager = ThreadManager(
        model=model, store=store, sink=sink, tools=ToolRegistry(sandbox_tools(Settings()))
    )
    await manager.run(
        THREAD,
        AgentConfig(model="scripted"),
        RunOptions(**options),
        prompt="look at the chart",
        sandbox=sandbox,
    )
    return store, sink


async def test_the_image_goes_to_the_next_call_only(sandbox: StaticSandbox) -> None:
    model = ScriptedChatModel(
        [
            ScriptedTurn(tool_calls=[("see_image", {"file_path": "chart.png"}, "call_img")]),
            ScriptedTurn(
                text="A bar chart. Checking notes.",
                tool_calls=[("read_file", {"file_path": "notes.md"}, "call_read")],
            ),
            ScriptedTurn(text="Done."),
        ]
    )
    store, sink = await run(model, sandbox)
    first, second, third = model.requests

    assert image_parts(first) == []
    assert image_parts(second) == [{"type": "image_url", "image_url": {"url": DATA_URL}}]
    roles = [m["role"] for m in second.messages]
    assert roles[-3:] == ["assistant", "tool", "user"]  # right after the tool's result
    assert second.messages[-1]["content"][0] == {
        "type": "text",
        "text": "Image from see_image: /workspace/chart.png",
    }

    assert image_parts(third) == []  # not again: later calls keep only the note
    notes = [m for m in third.messages if "Image from see_image" in str(m.get("content"))]
    assert len(notes) == 1 and isinstance(notes[0]["content"], str)

    stored = json.dumps(store.all_messages(THREAD))
    events = json.dumps([e.data for e in sink.events])
    payload = base64.b64encode(PNG).decode()
    assert payload not in stored and payload not in events  # never persisted nor streamed
    tool = next(m for m in store.all_messages(THREAD) if m["type"] == "tool")
    assert tool["metadata"]["image"]["path"] == "/workspace/chart.png"


async def test_the_image_follows_all_results_of_its_turn(sandbox: StaticSandbox) -> None:
    model = ScriptedChatModel(
        [
            ScriptedTurn(
                tool_calls=[
                    ("see_image", {"file_path": "chart.png"}, "call_img"),
                    ("read_file", {"file_path": "notes.md"}, "call_read"),
                ]
            ),
            ScriptedTurn(text="Done."),
        ]
    )
    await run(model, sandbox)
    roles = [m["role"] for m in model.requests[1].messages]
    assert roles[-4:] == ["assistant", "tool", "tool", "user"]
    assert len(image_parts(model.requests[1])) == 1


async def test_xml_calls_get_the_image_after_their_results(sandbox: StaticSandbox) -> None:
    call = (
        '<function_calls><invoke name="see_image"><parameter name="file_path">chart.png'
        "</parameter></invoke></function_calls>"
    )
    model = ScriptedChatModel([ScriptedTurn(text=call), ScriptedTurn(text="Done.")])
    await run(model, sandbox, native_tool_calling=False, xml_tool_calling=True)
    last_two = model.requests[1].messages[-2:]
    assert "<tool_result" in last_two[0]["content"]
    assert len(image_parts(model.requests[1])) == 1 and isinstance(last_two[1]["content"], list)


async def test_a_failed_see_image_attaches_nothing(sandbox: StaticSandbox) -> None:
    model = ScriptedChatModel(
        [ScriptedTurn(tool_calls=[("see_image", {"file_path": "notes.md"})]), ScriptedTurn()]
    )
    await run(model, sandbox)
    assert image_parts(model.requests[1]) == []
    assert "Image from see_image" not in json.dumps(model.requests[1].messages)


def test_the_image_is_not_counted_when_sizing_the_prompt() -> None:
    """build_prompt without payloads (used for token counting) carries no base64."""
    stored = [
        {"message_id": "1", "type": "user", "content": {"role": "user", "content": "hi"}},
        {
            "message_id": "2",
            "type": "assistant",
            "content": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c", "function": {"name": "see_image", "arguments": "{}"}}],
            },
        },
        {
            "message_id": "3",
            "type": "tool",
            "content": {"role": "tool", "tool_call_id": "c", "name": "see_image", "content": "ok"},
            "metadata": {"image": {"path": "/workspace/a.png", "mime_type": "image/png"}},
        },
    ]
    bare = build_prompt("sys", stored)
    with_image = build_prompt(
        "sys", stored, images={"c": {"mime_type": "image/png", "data": "QQ=="}}
    )
    assert bare[-1]["content"].startswith("Image from see_image: /workspace/a.png")
    assert with_image[-1]["content"][1]["image_url"]["url"] == "data:image/png;base64,QQ=="
