"""The agent loop through the REAL LiteLLM code path against the fake provider."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shoal.engine import AgentConfig, CollectingSink, InMemoryMessageStore, RunOptions
from shoal.engine.thread_manager import ThreadManager
from shoal.llm.fake_server import FakeLLMServer, FakeToolCall, FakeTurn
from shoal.llm.litellm_adapter import LiteLLMChatModel
from shoal.llm.types import LLMError
from shoal.tools import ToolRegistry
from tests.engine.conftest import FAKE_MODEL, EchoTool

THREAD = "thread-1"
XML_CALL = (
    'Let me echo.\n<function_calls>\n<invoke name="echo">\n'
    '<parameter name="text">hi &amp; bye</parameter>\n</invoke>\n</function_calls>\n'
)


def manager(
    model: LiteLLMChatModel, store: InMemoryMessageStore, sink: CollectingSink, reg: ToolRegistry
) -> ThreadManager:
    return ThreadManager(model=model, store=store, sink=sink, tools=reg)


def agent(**kwargs: Any) -> AgentConfig:
    return AgentConfig(model=FAKE_MODEL, system_prompt="You are the test agent.", **kwargs)


def assert_no_rejections(server: FakeLLMServer) -> None:
    assert [r.status for r in server.records if r.status != 429] == [200] * len(
        [r for r in server.records if r.status != 429]
    ), [(r.status, r.body["messages"][-1]) for r in server.records]


async def test_native_two_step_tool_loop(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(
        FakeTurn(text="Calling echo.", tool_calls=[FakeToolCall("echo", {"text": "hi"}, "call_A")]),
        FakeTurn(text="All done."),
    )
    result = await manager(litellm_model, store, sink, registry).run(
        THREAD, agent(), prompt="echo hi please"
    )

    assert result.finish_reason == "stop"
    assert result.iterations == 2
    assert_no_rejections(fake_llm)
    stored = store.all_messages(THREAD)
    assert [m["type"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assistant, tool = stored[1], stored[2]
    assert assistant["content"]["tool_calls"][0]["id"] == "call_A"
    assert tool["content"] == {
        "role": "tool",
        "tool_call_id": "call_A",
        "name": "echo",
        "content": "echo: hi",
    }
    assert tool["metadata"]["success"] is True
    assert tool["metadata"]["call_format"] == "native"
    assert isinstance(tool["metadata"]["duration_ms"], int)
    second = fake_llm.requests[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert second[3]["tool_call_id"] == "call_A"
    # ids are the provider's in every event
    for kind in ("tool_call", "tool_started", "tool_result"):
        assert sink.of_type(kind)[0].data["tool_call_id"] == "call_A"
    assert result.usage.calls == 2 and result.usage.prompt_tokens > 0


async def test_message_id_exists_before_first_text_delta(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(FakeTurn(text="Hello there, friend."))
    await manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="hi")
    deltas = sink.of_type("text_delta")
    message_ids = {d.data["message_id"] for d in deltas}
    assert len(message_ids) == 1
    assistant = next(e for e in sink.of_type("message") if e.data["message"]["type"] == "assistant")
    assert assistant.data["message"]["message_id"] in message_ids
    assert "".join(d.data["text"] for d in deltas) == "Hello there, friend."


async def test_xml_two_step_tool_loop(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
    echo_tool: EchoTool,
) -> None:
    fake_llm.script(FakeTurn(text=XML_CALL, chunk_size=5), FakeTurn(text="Done."))
    options = RunOptions(native_tool_calling=False, xml_tool_calling=True)
    result = await manager(litellm_model, store, sink, registry).run(
        THREAD, agent(), options, prompt="echo"
    )

    assert result.finish_reason == "stop"
    assert echo_tool.calls == ["hi & bye"]
    assert_no_rejections(fake_llm)
    first, second = fake_llm.requests
    assert "tools" not in first
    assert '<invoke name="echo">' in first["messages"][0]["content"]  # XML usage examples
    call_id = sink.of_type("tool_call")[0].data["tool_call_id"]
    assert call_id.startswith("call_")
    last = second["messages"][-1]
    assert last["role"] == "user"
    assert f'<tool_result name="echo" id="{call_id}">' in last["content"]
    assert "echo: hi & bye" in last["content"]
    assert not any(m["role"] == "tool" for m in second["messages"])
    tool = store.all_messages(THREAD)[2]
    assert tool["content"]["tool_call_id"] == call_id
    assert tool["metadata"]["call_format"] == "xml"


async def test_parallel_calls_run_concurrently(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    calls = [
        FakeToolCall("slow_echo", {"text": name, "delay": 0.3}, f"call_{name}")
        for name in ("a", "b", "c")
    ]
    fake_llm.script(FakeTurn(tool_calls=calls), FakeTurn(text="ok"))
    await manager(litellm_model, store, sink, registry).run(
        THREAD, agent(), RunOptions(parallel_tools=True), prompt="go"
    )
    kinds = [e.type for e in sink.events if e.type in ("tool_started", "tool_result")]
    assert kinds == ["tool_started"] * 3 + ["tool_result"] * 3  # all three ran at once
    assert_no_rejections(fake_llm)
    tools = [m for m in store.all_messages(THREAD) if m["type"] == "tool"]
    assert [t["content"]["tool_call_id"] for t in tools] == ["call_a", "call_b", "call_c"]
    assert len(sink.of_type("tool_output_delta")) == 3
    assert [m["role"] for m in fake_llm.requests[1]["messages"][-4:]] == [
        "assistant",
        "tool",
        "tool",
        "tool",
    ]


async def test_execute_on_stream_starts_first_call_before_stream_ends(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(
        FakeTurn(
            tool_calls=[
                FakeToolCall("echo", {"text": "one"}, "call_1"),
                FakeToolCall("echo", {"text": "two"}, "call_2", fragments=6),
            ],
            chunk_delay=0.03,
        ),
        FakeTurn(text="ok"),
    )
    await manager(litellm_model, store, sink, registry).run(
        THREAD, agent(), RunOptions(execute_on_stream=True), prompt="go"
    )
    types = [(e.type, e.data.get("tool_call_id")) for e in sink.events]
    first_usage = types.index(("usage", None))
    assert types.index(("tool_started", "call_1")) < first_usage
    assert types.index(("tool_result", "call_1")) < types.index(("tool_call", "call_2"))


async def test_execute_after_stream_waits_for_the_whole_response(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(
        FakeTurn(tool_calls=[FakeToolCall("echo", {"text": "x"}, "call_x")]), FakeTurn(text="ok")
    )
    await manager(litellm_model, store, sink, registry).run(
        THREAD, agent(), RunOptions(execute_on_stream=False), prompt="go"
    )
    types = sink.types()
    assistant_stored = next(
        i
        for i, e in enumerate(sink.events)
        if e.type == "message" and e.data["message"]["type"] == "assistant"
    )
    assert types.index("tool_started") > assistant_stored


async def test_malformed_and_unknown_calls_become_tool_errors(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(
        FakeTurn(
            tool_calls=[
                FakeToolCall("echo", '{"text": "unterminated', "call_bad"),
                FakeToolCall("launch_rockets", {"count": 3}, "call_unknown"),
                FakeToolCall("echo", {"wrong": 1}, "call_invalid"),
            ]
        ),
        FakeTurn(text="Sorry, fixed."),
    )
    result = await manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="go")
    assert result.finish_reason == "stop"
    assert_no_rejections(fake_llm)
    results = {e.data["tool_call_id"]: e.data for e in sink.of_type("tool_result")}
    assert not any(r["success"] for r in results.values())
    assert "not valid JSON" in results["call_bad"]["output"]
    assert "Unknown tool `launch_rockets`" in results["call_unknown"]["output"]
    assert "text: Field required" in results["call_invalid"]["output"]
    sent = {m.get("tool_call_id"): m.get("content") for m in fake_llm.requests[1]["messages"]}
    assert "Unknown tool" in sent["call_unknown"]


async def test_rate_limit_is_retried_with_an_error_event(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(FakeTurn.error(429, "slow down"), FakeTurn(text="Made it."))
    result = await manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="hi")
    assert result.finish_reason == "stop"
    errors = sink.of_type("error")
    assert errors[0].data["code"] == "llm_retry"
    assert "429" in errors[0].data["message"]
    assert [r.status for r in fake_llm.records] == [429, 200]
    assert store.all_messages(THREAD)[-1]["content"]["content"] == "Made it."


async def test_persistent_error_ends_with_a_clear_llm_error(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(*[FakeTurn.error(500, "provider down")] * 3)
    with pytest.raises(LLMError) as caught:
        await manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="hi")
    assert "failed after 3 attempts" in caught.value.message
    assert caught.value.code == "llm_error"
    assert len(sink.of_type("error")) == 2  # two retries announced
    status = [m for m in store.all_messages(THREAD) if m["type"] == "status"]
    assert status and status[0]["is_llm_message"] is False
    assert status[0]["content"]["role"] == "system"


async def test_non_retryable_error_fails_at_once(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(FakeTurn.error(401, "bad key"))
    with pytest.raises(LLMError, match="rejected"):
        await manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="hi")
    assert len(fake_llm.records) == 1
    assert sink.of_type("error") == []


async def test_cancellation_mid_stream_keeps_partial_text(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(FakeTurn(text="Hello there world", chunk_size=6, stall_after_first_chunk=30))
    task = asyncio.create_task(
        manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="hi")
    )
    while not sink.of_type("text_delta") and not task.done():
        await asyncio.sleep(0.01)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2
    assistant = store.all_messages(THREAD)[-1]
    assert assistant["type"] == "assistant"
    assert assistant["content"]["content"] == "Hello "
    assert assistant["metadata"]["interrupted"] is True
    assert assistant["message_id"] == sink.of_type("text_delta")[0].data["message_id"]
    usage = sink.of_type("usage")
    assert usage and usage[-1].data["estimated"] is True
    for _ in range(100):
        if fake_llm.disconnects:
            break
        await asyncio.sleep(0.02)
    assert fake_llm.disconnects == 1


async def test_length_cut_off_auto_continues(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(FakeTurn(text="Hello wor", finish_reason="length"), FakeTurn(text="ld!"))
    result = await manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="hi")
    assert result.finish_reason == "stop"
    assistants = [m for m in store.all_messages(THREAD) if m["type"] == "assistant"]
    assert len(assistants) == 1
    assert assistants[0]["content"]["content"] == "Hello world!"
    assert assistants[0]["metadata"]["continuations"] == 1
    assert fake_llm.requests[1]["messages"][-1] == {"role": "assistant", "content": "Hello wor"}


async def test_length_continuation_is_bounded(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(*[FakeTurn(text="more ", finish_reason="length")] * 5)
    options = RunOptions(max_auto_continues=2)
    await manager(litellm_model, store, sink, registry).run(THREAD, agent(), options, prompt="hi")
    assert len(fake_llm.requests) == 3
    assert store.all_messages(THREAD)[-1]["content"]["content"] == "more more more "


async def test_only_enabled_tools_and_the_agent_prompt_are_sent(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(FakeTurn(text="hi"))
    await manager(litellm_model, store, sink, registry).run(
        THREAD, agent(tools=["echo", "complete"]), prompt="hello"
    )
    body = fake_llm.requests[0]
    assert sorted(t["function"]["name"] for t in body["tools"]) == ["complete", "echo"]
    assert body["messages"][0] == {"role": "system", "content": "You are the test agent."}
    assert body["messages"][1] == {"role": "user", "content": "hello"}


async def test_unknown_model_cost_is_flagged(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(
        FakeTurn(tool_calls=[FakeToolCall("echo", {"text": "x"})], usage=(123, 45)),
        FakeTurn(text="ok"),
    )
    await manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="hi")
    usage = sink.of_type("usage")
    assert usage[0].data == {
        "model": FAKE_MODEL,
        "prompt_tokens": 123,
        "completion_tokens": 45,
        "cost_usd": 0.0,
        "estimated": False,
        "cost_known": False,
    }
    assert [e.data["code"] for e in sink.of_type("error")] == ["cost_unknown"]  # once per run


async def test_terminating_tools_end_the_run(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(FakeTurn(tool_calls=[FakeToolCall("ask", {"text": "Which file?"})]))
    result = await manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="go")
    assert result.finish_reason == "ask"
    fake_llm.script(FakeTurn(tool_calls=[FakeToolCall("complete", {})]))
    result = await manager(litellm_model, store, sink, registry).run(THREAD, agent(), prompt="ok")
    assert result.finish_reason == "complete"
    assert len(fake_llm.requests) == 2
    assert_no_rejections(fake_llm)


async def test_max_iterations_stops_the_loop(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    fake_llm.script(*[FakeTurn(tool_calls=[FakeToolCall("echo", {"text": "again"})])] * 3)
    result = await manager(litellm_model, store, sink, registry).run(
        THREAD, agent(), RunOptions(max_iterations=2), prompt="loop"
    )
    assert result.finish_reason == "max_iterations"
    assert len(fake_llm.requests) == 2
    status = store.all_messages(THREAD)[-1]
    assert status["type"] == "status" and status["is_llm_message"] is False
