"""The offline demo model drives a full tool loop (with a stand-in for sandbox tools)."""

from __future__ import annotations

from shoal.config import Settings
from shoal.engine import AgentConfig, CollectingSink, InMemoryMessageStore
from shoal.engine.thread_manager import ThreadManager
from shoal.llm import DEMO_MODEL, build_chat_model
from shoal.tools import Tool, ToolRegistry, ToolResult, tool_function
from shoal.tools.builtin import InteractionTool


class FakeShell(Tool):
    """Stands in for the sandbox's execute_command until the sandbox issue lands."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    @tool_function
    async def execute_command(self, command: str, timeout: int = 60) -> ToolResult:
        """Run a shell command in the workspace.

        Args:
            command: the command line
            timeout: seconds
        """
        self.commands.append(command)
        return ToolResult.ok("README.md\nsrc\n")


async def test_demo_model_runs_a_tool_loop_offline() -> None:
    shell = FakeShell()
    store, sink = InMemoryMessageStore(), CollectingSink()
    manager = ThreadManager(
        model=build_chat_model(Settings()),
        store=store,
        sink=sink,
        tools=ToolRegistry([shell, InteractionTool()]),
    )
    result = await manager.run("t", AgentConfig(model=DEMO_MODEL), prompt="please run `ls -a`")
    assert result.finish_reason == "stop"
    assert shell.commands == ["ls -a"]
    stored = store.all_messages("t")
    assert [m["type"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    final = stored[-1]["content"]["content"]
    assert final.startswith("[shoal demo model]")
    assert "README.md" in final
    assert len(sink.of_type("text_delta")) > 5  # streamed in small chunks
    assert "litellm" not in {e.data.get("model", "") for e in sink.of_type("usage")}


async def test_demo_model_says_when_the_tool_is_not_offered() -> None:
    store, sink = InMemoryMessageStore(), CollectingSink()
    manager = ThreadManager(
        model=build_chat_model(Settings()), store=store, sink=sink, tools=ToolRegistry()
    )
    result = await manager.run("t", AgentConfig(model=DEMO_MODEL), prompt="run: ls")
    assert result.finish_reason == "stop"
    text = store.all_messages("t")[-1]["content"]["content"]
    assert "not enabled" in text and "execute_command" in text


async def test_run_agent_entry_point_with_settings() -> None:
    from shoal.engine import RunOptions, run_agent

    store, sink = InMemoryMessageStore(), CollectingSink()
    shell = FakeShell()
    result = await run_agent(
        Settings(engine_max_iterations=5),
        thread_id="t",
        agent=AgentConfig(model=DEMO_MODEL, tools=["execute_command"]),
        store=store,
        sink=sink,
        prompt="run `echo hi`",
        extra_tools=[shell],
        run_id="run-1",
        options=RunOptions.from_settings(Settings(), execute_on_stream=False),
    )
    assert result.finish_reason == "stop" and shell.commands == ["echo hi"]
    assert all(m["agent_run_id"] == "run-1" for m in store.all_messages("t"))
