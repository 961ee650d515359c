"""One call for the run worker: build model and tools from settings, then run the loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shoal.engine.ports import EventSink, MessageStore
from shoal.engine.thread_manager import ThreadManager
from shoal.engine.types import AgentConfig, RunOptions, RunResult
from shoal.llm.base import ChatModel
from shoal.llm.factory import build_chat_model
from shoal.tools.base import Tool
from shoal.tools.defaults import build_tool_registry

if TYPE_CHECKING:
    from shoal.config import Settings


async def run_agent(
    settings: Settings,
    *,
    thread_id: str,
    agent: AgentConfig,
    store: MessageStore,
    sink: EventSink,
    options: RunOptions | None = None,
    run_id: str | None = None,
    prompt: str | None = None,
    extra_tools: Sequence[Tool] = (),
    sandbox: Any = None,
    model: ChatModel | None = None,
) -> RunResult:
    """Run an agent on a thread until it stops (see :class:`ThreadManager`).

    ``model`` defaults to :func:`~shoal.llm.factory.build_chat_model` (``shoal/demo`` offline,
    everything else through LiteLLM); the tools are the built-ins plus ``extra_tools`` (the
    sandbox tools), restricted to ``agent.tools``. Raises ``LLMError`` when the model fails
    for good and ``CancelledError`` when stopped (after storing the partial message).
    """
    manager = ThreadManager(
        model=model or build_chat_model(settings),
        store=store,
        sink=sink,
        tools=build_tool_registry(settings, enabled=agent.tools, extra_tools=extra_tools),
    )
    return await manager.run(
        thread_id,
        agent,
        options or RunOptions.from_settings(settings),
        run_id=run_id,
        prompt=prompt,
        sandbox=sandbox,
    )
