"""The offline demo model drives a full tool loop with the real sandbox tools (scripted fake)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shoal.config import Settings
from shoal.engine import AgentConfig, CollectingSink, InMemoryMessageStore, RunOptions, run_agent
from shoal.engine.thread_manager import ThreadManager
from shoal.llm import DEMO_MODEL, build_chat_model
from shoal.sandbox import ScriptedSandbox
from shoal.sandbox.fake import ScriptContext
from shoal.tools import StaticSandbox, ToolRegistry, build_tool_registry

THREAD = "t"


async def _python(ctx: ScriptContext) -> int:
    """The fake's `python3 FILE` for one-line print scripts."""
    source = (await ctx.read(ctx.command.split()[1])).decode()
    if not source.startswith("print("):
        await ctx.emit("stderr", "SyntaxError\n")
        return 1
    await ctx.emit("stdout", source[len("print('") : -len("')\n")] + "\n")
    return 0


@pytest.fixture
async def fake() -> AsyncIterator[ScriptedSandbox]:
    provider = ScriptedSandbox()
    provider.on("ls -a", stdout="README.md\nsrc\n")
    provider.on("python3 hello.py", _python)
    await provider.create(sandbox_id="demo")
    yield provider
    await provider.aclose()


def demo_manager(store: InMemoryMessageStore, sink: CollectingSink) -> ThreadManager:
    settings = Settings()
    return ThreadManager(
        model=build_chat_model(settings),
        store=store,
        sink=sink,
        tools=build_tool_registry(settings),
    )


async def test_demo_model_runs_a_command_in_the_sandbox(fake: ScriptedSandbox) -> None:
    store, sink = InMemoryMessageStore(), CollectingSink()
    result = await demo_manager(store, sink).run(
        THREAD,
        AgentConfig(model=DEMO_MODEL),
        prompt="please run `ls -a`",
        sandbox=StaticSandbox(fake, "demo"),
    )
    assert result.finish_reason == "stop"
    assert [c.command for c in fake.calls] == ["ls -a"]
    stored = store.all_messages(THREAD)
    assert [m["type"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    final = stored[-1]["content"]["content"]
    assert final.startswith("[shoal demo model]")
    assert "README.md" in final
    deltas = sink.of_type("tool_output_delta")
    assert "".join(e.data["text"] for e in deltas) == "README.md\nsrc\n"
    assert len(sink.of_type("text_delta")) > 5  # streamed in small chunks
    assert "litellm" not in {e.data.get("model", "") for e in sink.of_type("usage")}


async def test_demo_writes_a_python_script_and_runs_it(fake: ScriptedSandbox) -> None:
    store, sink = InMemoryMessageStore(), CollectingSink()
    result = await demo_manager(store, sink).run(
        THREAD,
        AgentConfig(model=DEMO_MODEL),
        prompt="write a python script that prints hello and run it",
        sandbox=StaticSandbox(fake, "demo"),
    )
    assert result.finish_reason == "stop"
    assert await fake.read_file("demo", "hello.py") == b"print('hello')\n"
    stored = store.all_messages(THREAD)
    assert [m["type"] for m in stored] == ["user", "assistant", "tool", "tool", "assistant"]
    calls = stored[1]["content"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["create_file", "execute_command"]
    assert all(m["metadata"]["success"] for m in stored[2:4])
    final = stored[-1]["content"]["content"]
    assert "create_file" in final and "execute_command" in final
    assert "hello\n[exit code 0]" in final


async def test_without_a_sandbox_the_demo_reports_the_tool_error() -> None:
    store, sink = InMemoryMessageStore(), CollectingSink()
    await demo_manager(store, sink).run(THREAD, AgentConfig(model=DEMO_MODEL), prompt="run: ls")
    tool = store.all_messages(THREAD)[2]
    assert tool["metadata"]["success"] is False
    assert "No sandbox is available" in store.all_messages(THREAD)[-1]["content"]["content"]


async def test_demo_model_says_when_the_tool_is_not_offered() -> None:
    store, sink = InMemoryMessageStore(), CollectingSink()
    manager = ThreadManager(
        model=build_chat_model(Settings()), store=store, sink=sink, tools=ToolRegistry()
    )
    result = await manager.run(THREAD, AgentConfig(model=DEMO_MODEL), prompt="run: ls")
    assert result.finish_reason == "stop"
    text = store.all_messages(THREAD)[-1]["content"]["content"]
    assert "not enabled" in text and "execute_command" in text


async def test_run_agent_entry_point_with_settings(fake: ScriptedSandbox) -> None:
    store, sink = InMemoryMessageStore(), CollectingSink()
    result = await run_agent(
        Settings(engine_max_iterations=5),
        thread_id=THREAD,
        agent=AgentConfig(model=DEMO_MODEL, tools=["execute_command"]),
        store=store,
        sink=sink,
        prompt="run `echo hi`",
        run_id="run-1",
        options=RunOptions.from_settings(Settings(), execute_on_stream=False),
        sandbox=StaticSandbox(fake, "demo"),
    )
    assert result.finish_reason == "stop" and [c.command for c in fake.calls] == ["echo hi"]
    assert all(m["agent_run_id"] == "run-1" for m in store.all_messages(THREAD))
    assert "hi\n[exit code 0]" in store.all_messages(THREAD)[-1]["content"]["content"]
