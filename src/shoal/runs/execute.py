"""execute_run: wires the engine to a claimed run — model, tools, ports, options."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.agents import service as agent_service
from shoal.billing import service as billing
from shoal.config import Settings
from shoal.db.engine import read_factory
from shoal.db.models import AgentRun
from shoal.db.session import unit_of_work
from shoal.engine.thread_manager import ThreadManager
from shoal.engine.types import AgentConfig, RunOptions, RunResult
from shoal.llm.base import ChatModel
from shoal.observability.metrics import SANDBOX_EXEC_SECONDS
from shoal.runs.events import RunEventLog, RunMessageStore, message_dict
from shoal.runs.runtime import Runtime
from shoal.sandboxes.access import ProjectSandbox
from shoal.threads.repository import MessageRepository
from shoal.tools.defaults import build_tool_registry
from shoal.tools.registry import ToolRegistry


@dataclass(frozen=True, slots=True)
class Prepared:
    agent: agent_service.EffectiveAgent
    history: list[dict[str, Any]]


async def prepare(session: AsyncSession, run: RunSnapshot) -> Prepared:
    """What the first model call needs from the database: the agent and the history."""
    agent = await agent_service.resolve(
        session, account_id=run.account_id, requested_agent_id=run.agent_id, thread_agent_id=None
    )
    history = await MessageRepository(session).llm_messages(run.thread_id)
    return Prepared(agent, [message_dict(m) for m in history])


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
    prepared: Prepared | None = None
    """The agent and the thread's history, when read in the claim's transaction."""

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
    prepared = run.prepared
    if prepared is None:  # one read (beside the writer on SQLite) for agent and history
        async with read_factory(runtime.session_factory)() as session:
            prepared = await prepare(session, run)
    agent = prepared.agent
    settings = runtime.settings
    registry = _registry(settings, agent.tools)
    options = RunOptions.from_settings(
        settings,
        max_iterations=run.options.get("max_iterations"),
        enable_thinking=bool(run.options.get("enable_thinking", False)),
        reasoning_effort=run.options.get("reasoning_effort"),
        enable_context_manager=bool(run.options.get("enable_context_manager", True)),
    )
    manager = ThreadManager(
        model=model,
        store=RunMessageStore(runtime, events, history=prepared.history),
        sink=events,
        tools=registry,
    )
    config = AgentConfig(
        model=run.model_name, system_prompt=agent.system_prompt, tools=agent.tools, name=agent.name
    )
    sandbox = ProjectSandbox(
        runtime.sandboxes,
        project_id=run.project_id,
        public_url=settings.relay_url,
        on_exec=_exec_reporter(runtime, run),
    )
    return await manager.run(
        str(run.thread_id), config, options, run_id=str(run.id), sandbox=sandbox
    )


# The tool registry of each (settings, tool list): the tools are configured from settings only
# and hold no per-run state, and building them (argument models, schemas) costs milliseconds.
_REGISTRIES: dict[tuple[int, tuple[str, ...] | None], tuple[Settings, ToolRegistry]] = {}


def _registry(settings: Settings, enabled: Sequence[str] | None) -> ToolRegistry:
    key = (id(settings), None if enabled is None else tuple(enabled))
    cached = _REGISTRIES.get(key)
    if cached is None or cached[0] is not settings:
        if len(_REGISTRIES) >= 64:
            _REGISTRIES.clear()
        cached = _REGISTRIES[key] = (settings, build_tool_registry(settings, enabled=enabled))
    return cached[1]


def _exec_reporter(runtime: Runtime, run: RunSnapshot) -> Callable[[float], Awaitable[None]]:
    """Each sandbox command's seconds → one usage-ledger row (and the exec histogram)."""
    counter = 0

    async def report(seconds: float) -> None:
        nonlocal counter
        counter += 1
        SANDBOX_EXEC_SECONDS.observe(seconds)
        async with unit_of_work(runtime.session_factory) as session:
            await billing.record_exec_usage(
                session,
                settings=runtime.settings,
                account_id=run.account_id,
                project_id=run.project_id,
                thread_id=run.thread_id,
                run_id=run.id,
                attempt=run.attempt,
                seconds=seconds,
                key=f"exec:{run.id}:{run.attempt}:{counter}",
            )

    return report
