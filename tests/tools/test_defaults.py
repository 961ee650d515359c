"""The registry a run gets: every contract tool name of the default agent is offered."""

from __future__ import annotations

from shoal.agents.schemas import BUILTIN_TOOLS
from shoal.config import Settings
from shoal.tools import ToolContext, build_tool_registry

SANDBOX_TOOLS = {
    "execute_command",
    "check_command_output",
    "terminate_command",
    "list_commands",
    "create_file",
    "str_replace",
    "full_file_rewrite",
    "delete_file",
    "read_file",
    "expose_port",
    "see_image",
}


def test_the_default_agent_gets_every_builtin_tool() -> None:
    registry = build_tool_registry(Settings(tavily_api_key="tvly-test"), enabled=BUILTIN_TOOLS)
    assert sorted(registry.names) == sorted(BUILTIN_TOOLS)
    assert set(registry.names) >= SANDBOX_TOOLS


def test_an_agent_can_leave_the_sandbox_tools_out() -> None:
    registry = build_tool_registry(Settings(), enabled=["read_file", "complete"])
    assert sorted(registry.names) == ["complete", "read_file"]


async def test_settings_reach_the_tools() -> None:
    registry = build_tool_registry(Settings(command_max_timeout_seconds=10))
    result = await registry.execute(
        "execute_command", {"command": "ls", "timeout": 20}, ToolContext(thread_id="t")
    )
    assert not result.success and "at most 10 seconds" in result.output
