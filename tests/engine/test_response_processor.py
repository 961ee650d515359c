"""Response processing with the scripted model (no HTTP): thinking, stops, XML edge cases."""

from __future__ import annotations

import asyncio

import pytest

from shoal.engine import AgentConfig, CollectingSink, InMemoryMessageStore, RunOptions
from shoal.engine.thread_manager import ThreadManager
from shoal.llm.scripted import ScriptedChatModel, ScriptedTurn
from shoal.llm.types import LLMError, TextDelta, ThinkingBlockDelta
from shoal.tools import ToolRegistry
from tests.engine.conftest import EchoTool

THREAD = "t-proc"


def make(
    model: ScriptedChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> ThreadManager:
    return ThreadManager(model=model, store=store, sink=sink, tools=registry)


async def test_thinking_blocks_are_kept_and_sent_back_verbatim(
    store: InMemoryMessageStore, sink: CollectingSink, registry: ToolRegistry
) -> None:
    thinking = [
        ThinkingBlockDelta({"type": "thinking", "thinking": "Let me ", "index": 0}),
        ThinkingBlockDelta({"type": "thinking", "thinking": "think.", "index": 0}),
        ThinkingBlockDelta({"type": "thinking", "thinking": "", "signature": "sig==", "index": 0}),
        ThinkingBlockDelta({"type": "redacted_thinking", "data": "opaque", "index": 1}),
    ]
    model = ScriptedChatModel(
        [
            ScriptedTurn(
                tool_calls=[("echo", {"text": "a"})],
                reasoning="Let me think.",
                extra=list(thinking),
            ),
            ScriptedTurn(text="done"),
        ]
    )
    options = RunOptions(enable_thinking=True, reasoning_effort="high")
    await make(model, store, sink, registry).run(
        THREAD, AgentConfig(model="m"), options, prompt="go"
    )
    assistant = store.all_messages(THREAD)[1]
    blocks = [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
    assert assistant["metadata"]["thinking_blocks"] == blocks
    assert assistant["metadata"]["reasoning_content"] == "Let me think."
    sent = model.requests[1].messages[2]
    assert sent["role"] == "assistant" and sent["thinking_blocks"] == blocks
    assert model.requests[0].enable_thinking and model.requests[0].reasoning_effort == "high"
    assert sink.of_type("reasoning_delta")[0].data["text"] == "Let me think."


async def test_cancel_while_a_tool_runs_stores_interrupted_result(
    store: InMemoryMessageStore, sink: CollectingSink, registry: ToolRegistry
) -> None:
    model = ScriptedChatModel(
        [ScriptedTurn(tool_calls=[("slow_echo", {"text": "a", "delay": 30}, "call_s")])]
    )
    task = asyncio.create_task(
        make(model, store, sink, registry).run(THREAD, AgentConfig(model="m"), prompt="go")
    )
    while not sink.of_type("tool_output_delta"):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = store.all_messages(THREAD)
    assert [m["type"] for m in stored] == ["user", "assistant", "tool"]
    assert stored[2]["content"]["tool_call_id"] == "call_s"
    assert stored[2]["metadata"]["success"] is False
    assert stored[2]["metadata"]["interrupted"] is True


async def test_llm_error_mid_stream_keeps_partial_text(
    store: InMemoryMessageStore, sink: CollectingSink, registry: ToolRegistry
) -> None:
    def broken(request: object) -> list[TextDelta]:
        raise LLMError("stream broke")

    model = ScriptedChatModel([broken])
    with pytest.raises(LLMError):
        await make(model, store, sink, registry).run(THREAD, AgentConfig(model="m"), prompt="x")
    assert store.all_messages(THREAD)[-1]["type"] == "status"


async def test_xml_call_cut_off_is_reported_to_the_model(
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
    echo_tool: EchoTool,
) -> None:
    cut = '<function_calls><invoke name="echo"><parameter name="text">never closed'
    model = ScriptedChatModel([ScriptedTurn(text=cut), ScriptedTurn(text="sorry")])
    options = RunOptions(native_tool_calling=False, xml_tool_calling=True)
    result = await make(model, store, sink, registry).run(
        THREAD, AgentConfig(model="m"), options, prompt="x"
    )
    assert result.finish_reason == "stop"
    assert echo_tool.calls == []
    [tool_result] = sink.of_type("tool_result")
    assert tool_result.data["success"] is False and "cut off" in tool_result.data["output"]
    assert "<tool_result" in model.requests[1].messages[-1]["content"]


async def test_xml_text_parameter_keeps_raw_text(
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
    echo_tool: EchoTool,
) -> None:
    text = '<function_calls><invoke name="echo"><parameter name="text">0042</parameter></invoke>'
    text += '<invoke name="echo"><parameter name="text">{"a": 1}</parameter></invoke>'
    model = ScriptedChatModel([ScriptedTurn(text=text + "</function_calls>"), ScriptedTurn()])
    options = RunOptions(native_tool_calling=False, xml_tool_calling=True)
    await make(model, store, sink, registry).run(
        THREAD, AgentConfig(model="m"), options, prompt="x"
    )
    assert echo_tool.calls == ["0042", '{"a": 1}']


async def test_sequential_execution_keeps_order(
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
    echo_tool: EchoTool,
) -> None:
    calls = [("slow_echo", {"text": "first", "delay": 0.05}), ("echo", {"text": "second"})]
    model = ScriptedChatModel([ScriptedTurn(tool_calls=calls), ScriptedTurn(text="ok")])
    await make(model, store, sink, registry).run(
        THREAD, AgentConfig(model="m"), RunOptions(parallel_tools=False), prompt="x"
    )
    assert echo_tool.calls == ["first", "second"]
    kinds = [e.type for e in sink.events if e.type in ("tool_started", "tool_result")]
    assert kinds == ["tool_started", "tool_result"] * 2


async def test_status_and_user_messages_shapes(
    store: InMemoryMessageStore, sink: CollectingSink, registry: ToolRegistry
) -> None:
    model = ScriptedChatModel([ScriptedTurn(text="hello")])
    result = await make(model, store, sink, registry).run(
        THREAD, AgentConfig(model="m"), prompt="hi"
    )
    user, assistant = store.all_messages(THREAD)
    assert user["content"] == {"role": "user", "content": "hi"} and user["is_llm_message"]
    assert assistant["content"] == {"role": "assistant", "content": "hello"}
    assert result.last_message_id == assistant["message_id"]
    messages = [e.data["message"]["message_id"] for e in sink.of_type("message")]
    assert messages == [user["message_id"], assistant["message_id"]]
    assert result.usage.as_dict()["prompt_tokens"] > 0
