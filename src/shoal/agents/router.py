"""/api/agents: agent configurations of the acting account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from shoal.accounts.deps import ActingAccount, CurrentPrincipal
from shoal.agents import service
from shoal.agents.deps import OwnedAgent
from shoal.agents.schemas import AgentCreate, AgentList, AgentRead, AgentUpdate
from shoal.db.deps import ListQuery, SessionDep

router = APIRouter(tags=["agents"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found, or not yours"}}


@router.post("/agents", status_code=201, response_model=AgentRead)
async def create_agent(
    body: AgentCreate, session: SessionDep, principal: CurrentPrincipal, account_id: ActingAccount
) -> AgentRead:
    """Create an agent config in the acting account. `is_default` makes it the account default
    (the previous default stops being one)."""
    agent = await service.create(session, principal, account_id=account_id, data=body)
    return AgentRead.model_validate(agent)


@router.get("/agents", response_model=AgentList)
async def list_agents(
    session: SessionDep, principal: CurrentPrincipal, account_id: ActingAccount, params: ListQuery
) -> AgentList:
    """Agent configs of the acting account, newest first."""
    page = await service.page(
        session, principal, account_id=account_id, limit=params.limit, cursor=params.cursor
    )
    return AgentList(
        agents=[AgentRead.model_validate(a) for a in page.items], next_cursor=page.next_cursor
    )


@router.get("/agents/{agent_id}", response_model=AgentRead, responses=_NOT_FOUND)
async def get_agent(agent: OwnedAgent) -> AgentRead:
    """One agent config."""
    return AgentRead.model_validate(agent)


@router.patch("/agents/{agent_id}", response_model=AgentRead, responses=_NOT_FOUND)
async def update_agent(
    agent: OwnedAgent, body: AgentUpdate, session: SessionDep, principal: CurrentPrincipal
) -> AgentRead:
    """Change an agent config; only the fields sent change."""
    updated = await service.update(session, principal, agent=agent, data=body)
    return AgentRead.model_validate(updated)


@router.delete("/agents/{agent_id}", status_code=204, responses=_NOT_FOUND)
async def delete_agent(
    agent: OwnedAgent, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Delete an agent config. Threads that named it use the account default from then on."""
    await service.delete(session, principal, agent=agent)
    return Response(status_code=204)
