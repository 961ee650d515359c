"""Agent configs: CRUD, the one default per account, and the config a run uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.agents.repository import AgentRepository
from shoal.agents.schemas import BUILTIN_TOOLS, AgentCreate, AgentUpdate
from shoal.auth.principal import Principal
from shoal.db.models import Agent
from shoal.db.repository import Page
from shoal.errors import NotFound

DEFAULT_SYSTEM_PROMPT = (
    "You are shoal's agent. You work in a sandbox whose files live under /workspace. "
    "Think step by step, use the tools available to you to act, and report what you did. "
    "When the task is done call `complete`; when you need the user's input call `ask`."
)


@dataclass(frozen=True, slots=True)
class EffectiveAgent:
    """What a run executes with: a stored agent, or the built-in default."""

    agent_id: uuid.UUID | None
    name: str
    system_prompt: str
    model_name: str | None
    tools: tuple[str, ...]


BUILTIN_AGENT = EffectiveAgent(
    agent_id=None,
    name="shoal",
    system_prompt=DEFAULT_SYSTEM_PROMPT,
    model_name=None,
    tools=BUILTIN_TOOLS,
)


async def create(
    session: AsyncSession, principal: Principal, *, account_id: uuid.UUID, data: AgentCreate
) -> Agent:
    repo = AgentRepository(session)
    if data.is_default:
        await repo.clear_default(account_id)
    return await repo.add(Agent(account_id=account_id, **data.model_dump()))


async def get(session: AsyncSession, principal: Principal, agent_id: uuid.UUID) -> Agent:
    agent = await AgentRepository(session).readable(principal, agent_id)
    if agent is None:
        raise NotFound("Agent not found.")
    return agent


async def page(
    session: AsyncSession,
    principal: Principal,
    *,
    account_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> Page[Agent]:
    return await AgentRepository(session).page(account_id, limit=limit, cursor=cursor)


async def update(
    session: AsyncSession, principal: Principal, *, agent: Agent, data: AgentUpdate
) -> Agent:
    changes = data.model_dump(exclude_unset=True)
    for required in ("name", "system_prompt", "tools", "is_default"):
        if required in changes and changes[required] is None:
            changes.pop(required)
    repo = AgentRepository(session)
    if changes.get("is_default") and not agent.is_default:
        await repo.clear_default(agent.account_id)
        await session.flush()
    for key, value in changes.items():
        setattr(agent, key, value)
    await session.flush()
    return agent


async def delete(session: AsyncSession, principal: Principal, *, agent: Agent) -> None:
    """Delete an agent; threads naming it fall back to the account default (FK sets null)."""
    await AgentRepository(session).delete(agent)


async def resolve(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    requested_agent_id: uuid.UUID | None,
    thread_agent_id: uuid.UUID | None,
) -> EffectiveAgent:
    """The config a run uses: the requested agent, else the thread's, else the account default,
    else the built-in agent. A requested or thread agent must belong to the account (404)."""
    repo = AgentRepository(session)
    agent: Agent | None = None
    for candidate in (requested_agent_id, thread_agent_id):
        if candidate is not None:
            agent = await repo.get_in_account(account_id, candidate)
            if agent is None:
                raise NotFound("Agent not found.")
            break
    if agent is None:
        agent = await repo.default_for(account_id)
    if agent is None:
        return BUILTIN_AGENT
    return EffectiveAgent(
        agent_id=agent.agent_id,
        name=agent.name,
        system_prompt=agent.system_prompt or DEFAULT_SYSTEM_PROMPT,
        model_name=agent.model_name,
        tools=tuple(agent.tools),
    )


async def ensure_in_account(
    session: AsyncSession, *, account_id: uuid.UUID, agent_id: uuid.UUID
) -> None:
    """Raise NotFound unless ``agent_id`` is an agent of ``account_id`` (threads naming one)."""
    if await AgentRepository(session).get_in_account(account_id, agent_id) is None:
        raise NotFound("Agent not found.")
