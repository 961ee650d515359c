"""Context management: summaries replace old turns in the prompt; huge outputs are clipped."""

from __future__ import annotations

from shoal.engine import AgentConfig, CollectingSink, InMemoryMessageStore, RunOptions
from shoal.engine.thread_manager import ThreadManager
from shoal.llm.fake_server import FakeLLMServer, FakeTurn
from shoal.llm.litellm_adapter import LiteLLMChatModel
from shoal.llm.scripted import ScriptedChatModel, ScriptedTurn
from shoal.llm.types import ChatRequest, Chunk
from shoal.tools import ToolRegistry
from tests.engine.conftest import FAKE_MODEL

THREAD = "thread-ctx"


async def seed_history(store: InMemoryMessageStore, turns: int) -> list[str]:
    """``turns`` user/assistant(tool_calls)/tool/assistant exchanges with bulky text."""
    ids = []
    for n in range(turns):
        user = await store.add_message(
            THREAD, type="user", content={"role": "user", "content": f"OLD-{n} " + "x" * 800}
        )
        call = {
            "id": f"call_old{n}",
            "type": "function",
            "function": {"name": "echo", "arguments": '{"text": "y"}'},
        }
        assistant = await store.add_message(
            THREAD,
            type="assistant",
            content={"role": "assistant", "content": "", "tool_calls": [call]},
        )
        tool = await store.add_message(
            THREAD,
            type="tool",
            content={
                "role": "tool",
                "tool_call_id": f"call_old{n}",
                "name": "echo",
                "content": "echo: y " * 50,
            },
            metadata={"success": True, "duration_ms": 1, "call_format": "native"},
        )
        answer = await store.add_message(
            THREAD, type="assistant", content={"role": "assistant", "content": f"ANSWER-{n}"}
        )
        ids += [
            user["message_id"],
            assistant["message_id"],
            tool["message_id"],
            answer["message_id"],
        ]
    return ids


async def test_summary_replaces_old_turns_in_the_next_request(
    fake_llm: FakeLLMServer,
    litellm_model: LiteLLMChatModel,
    store: InMemoryMessageStore,
    sink: CollectingSink,
    registry: ToolRegistry,
) -> None:
    old_ids = await seed_history(store, 6)
    fake_llm.script(FakeTurn(text="SUMMARY-XYZ of the old work"), FakeTurn(text="Fresh answer."))
    options = RunOptions(context_window=2000, context_threshold=0.8)
    manager = ThreadManager(model=litellm_model, store=store, sink=sink, tools=registry)
    result = await manager.run(
        THREAD, AgentConfig(model=FAKE_MODEL), options, prompt="NEW QUESTION"
    )
    assert result.finish_reason == "stop"
    summary_request, main_request = fake_llm.requests
    assert "tools" not in summary_request
    assert "OLD-0" in summary_request["messages"][-1]["content"]

    sent = main_request["messages"]
    text = "\n".join(str(m.get("content")) for m in sent)
    assert "SUMMARY-XYZ" in text
    assert "OLD-0" not in text and "ANSWER-0" not in text
    assert sent[-1] == {"role": "user", "content": "NEW QUESTION"}
    assert [r.status for r in fake_llm.records] == [200, 200]  # tool pairs never split

    stored = store.all_messages(THREAD)
    summary = next(m for m in stored if m["type"] == "summary")
    assert summary["content"]["role"] == "system"
    assert set(summary["metadata"]["summarized_message_ids"]) <= set(old_ids)
    assert summary["metadata"]["summarized_message_ids"][0] == old_ids[0]
    assert all(any(m["message_id"] == i for m in stored) for i in old_ids)  # originals kept
    assert len(sink.of_type("usage")) == 2  # the summary call is metered too


async def test_no_summary_below_the_threshold(
    store: InMemoryMessageStore, sink: CollectingSink, registry: ToolRegistry
) -> None:
    await seed_history(store, 2)
    model = ScriptedChatModel([ScriptedTurn(text="hi")])
    manager = ThreadManager(model=model, store=store, sink=sink, tools=registry)
    await manager.run(THREAD, AgentConfig(model="m"), RunOptions(), prompt="q")
    assert len(model.requests) == 1
    assert not any(m["type"] == "summary" for m in store.all_messages(THREAD))


async def test_context_manager_can_be_disabled(
    store: InMemoryMessageStore, sink: CollectingSink, registry: ToolRegistry
) -> None:
    await seed_history(store, 6)
    model = ScriptedChatModel([ScriptedTurn(text="hi")], context_window=1000)
    manager = ThreadManager(model=model, store=store, sink=sink, tools=registry)
    options = RunOptions(enable_context_manager=False)
    await manager.run(THREAD, AgentConfig(model="m"), options, prompt="q")
    assert len(model.requests) == 1


async def test_second_summary_covers_the_first(
    store: InMemoryMessageStore, sink: CollectingSink, registry: ToolRegistry
) -> None:
    await seed_history(store, 6)
    model = ScriptedChatModel(
        [ScriptedTurn(text="FIRST-SUMMARY"), ScriptedTurn(text="a1")], context_window=2000
    )
    manager = ThreadManager(model=model, store=store, sink=sink, tools=registry)
    await manager.run(THREAD, AgentConfig(model="m"), RunOptions(), prompt="q1")
    await seed_history(store, 6)
    model.add(ScriptedTurn(text="SECOND-SUMMARY"), ScriptedTurn(text="a2"))
    await manager.run(THREAD, AgentConfig(model="m"), RunOptions(), prompt="q2")
    second_summary_request = model.requests[2]
    assert "FIRST-SUMMARY" in second_summary_request.messages[-1]["content"]
    final = "\n".join(str(m.get("content")) for m in model.requests[3].messages)
    assert "SECOND-SUMMARY" in final and "FIRST-SUMMARY" not in final


async def test_huge_tool_output_is_clipped_and_expandable(
    store: InMemoryMessageStore, sink: CollectingSink, registry: ToolRegistry
) -> None:
    big = "A" * 3000 + "MIDDLE" + "B" * 3000
    await store.add_message(THREAD, type="user", content={"role": "user", "content": "go"})
    await store.add_message(
        THREAD,
        type="assistant",
        content={
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "echo", "arguments": "{}"}}
            ],
        },
    )
    tool = await store.add_message(
        THREAD,
        type="tool",
        content={"role": "tool", "tool_call_id": "c1", "name": "echo", "content": big},
        metadata={"success": True, "duration_ms": 1, "call_format": "native"},
    )

    def expand(request: ChatRequest) -> list[Chunk]:
        call = ("expand_message", {"message_id": tool["message_id"]})
        return ScriptedTurn(tool_calls=[call]).chunks(request)

    model = ScriptedChatModel([expand, ScriptedTurn(text="read it")])
    manager = ThreadManager(model=model, store=store, sink=sink, tools=registry)
    await manager.run(THREAD, AgentConfig(model="m"), RunOptions(prompt_tool_output_max_chars=1000))
    first_prompt = model.requests[0].messages
    clipped = next(m for m in first_prompt if m.get("tool_call_id") == "c1")["content"]
    assert len(clipped) < 1500 and "MIDDLE" not in clipped
    assert f'expand_message with message_id "{tool["message_id"]}"' in clipped
    expanded = model.requests[1].messages[-1]
    assert expanded["role"] == "tool" and expanded["content"] == big  # expand output unclipped


async def test_native_call_without_result_gets_a_placeholder(
    store: InMemoryMessageStore, sink: CollectingSink, registry: ToolRegistry
) -> None:
    await store.add_message(THREAD, type="user", content={"role": "user", "content": "go"})
    await store.add_message(
        THREAD,
        type="assistant",
        content={
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c9", "type": "function", "function": {"name": "echo", "arguments": "{}"}}
            ],
        },
        metadata={"interrupted": True},
    )
    await store.add_message(THREAD, type="user", content={"role": "user", "content": "again"})
    model = ScriptedChatModel([ScriptedTurn(text="ok")])
    manager = ThreadManager(model=model, store=store, sink=sink, tools=registry)
    await manager.run(THREAD, AgentConfig(model="m"))
    roles = [m["role"] for m in model.requests[0].messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert "interrupted" in model.requests[0].messages[3]["content"]
