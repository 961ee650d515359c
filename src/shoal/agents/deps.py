"""Load-and-check dependencies for agent routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from shoal.accounts.deps import CurrentPrincipal
from shoal.agents import service
from shoal.db.deps import SessionDep
from shoal.db.models import Agent
from shoal.errors import NotFound
from shoal.kit.ids import parse_id


async def _owned_agent(agent_id: str, session: SessionDep, principal: CurrentPrincipal) -> Agent:
    parsed = parse_id(agent_id)
    if parsed is None:
        raise NotFound("Agent not found.")
    return await service.get(session, principal, parsed)


OwnedAgent = Annotated[Agent, Depends(_owned_agent)]
