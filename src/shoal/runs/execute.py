"""execute_run: wires the engine to a claimed run — model, tools, ports, options."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from shoal.agents import service as agent_service
from shoal.db.models import AgentRun
from shoal.engine.thread_manager import ThreadManager
from shoal.engine.types import AgentConfig, RunOptions, RunResult
from shoal.llm.base import ChatModel
from shoal.runs.events import RunEventLog, RunMessageStore
from shoal.runs.runtime import Runtime
from shoal.tools.defaults import build_tool_registry


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """What the worker read at claim time (plain values: no ORM object crosses tasks)."""

    id: uuid.UUID
    thread_id: uuid.UUID
    project_id: uuid.UUID
    account_id: uuid.UUID
    agent_id: uuid.UUID | None
    model_name: str
    options: dict[str, Any]
    attempt: int
    last_event_seq: int

    @classmethod
    def of(cls, run: AgentRun) -> RunSnapshot:
        return cls(
            id=run.id,
            thread_id=run.thread_id,
            project_id=run.project_id,
            account_id=run.account_id,
            agent_id=run.agent_id,
            model_name=run.model_name,
            options=dict(run.options or {}),
            attempt=run.attempt,
            last_event_seq=run.last_event_seq,
        )


async def execute_run(
    runtime: Runtime, model: ChatModel, run: RunSnapshot, events: RunEventLog
) -> RunResult:
    """Run the agent loop for ``run``; raises CancelledError when stopped, LLMError on a
    provider failure."""
    async with runtime.session_factory() as session:
        agent = await agent_service.resolve(
            session,
            account_id=run.account_id,
            requested_agent_id=run.agent_id,
            thread_agent_id=None,
        )
    settings = runtime.settings
    registry = build_tool_registry(settings, enabled=agent.tools)
    options = RunOptions.from_settings(
        settings,
        max_iterations=run.options.get("max_iterations"),
        enable_thinking=bool(run.options.get("enable_thinking", False)),
        reasoning_effort=run.options.get("reasoning_effort"),
        enable_context_manager=bool(run.options.get("enable_context_manager", True)),
    )
    manager = ThreadManager(
        model=model, store=RunMessageStore(runtime, events), sink=events, tools=registry
    )
    config = AgentConfig(
        model=run.model_name, system_prompt=agent.system_prompt, tools=agent.tools, name=agent.name
    )
    return await manager.run(str(run.thread_id), config, options, run_id=str(run.id))
