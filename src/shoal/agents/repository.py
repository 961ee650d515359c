"""All SQL about agent configs."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from shoal.accounts.repository import member_account_ids
from shoal.auth.principal import Principal
from shoal.db.models import Agent
from shoal.db.repository import Page, RepositoryBase, newest_first


class AgentRepository(RepositoryBase):
    async def readable(self, principal: Principal, agent_id: uuid.UUID) -> Agent | None:
        """An agent of an account the principal belongs to (the one tenant filter)."""
        result = await self.session.execute(
            select(Agent).where(
                Agent.agent_id == agent_id, Agent.account_id.in_(member_account_ids(principal))
            )
        )
        return result.scalar_one_or_none()

    async def get_in_account(self, account_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        result = await self.session.execute(
            select(Agent).where(Agent.agent_id == agent_id, Agent.account_id == account_id)
        )
        return result.scalar_one_or_none()

    async def default_for(self, account_id: uuid.UUID) -> Agent | None:
        result = await self.session.execute(
            select(Agent).where(Agent.account_id == account_id, Agent.is_default.is_(True))
        )
        return result.scalar_one_or_none()

    async def page(self, account_id: uuid.UUID, *, limit: int, cursor: str | None) -> Page[Agent]:
        return await newest_first(
            self.session,
            select(Agent).where(Agent.account_id == account_id),
            created_at=Agent.created_at,
            ident=Agent.agent_id,
            limit=limit,
            cursor=cursor,
        )

    async def clear_default(self, account_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Agent)
            .where(Agent.account_id == account_id, Agent.is_default.is_(True))
            .values(is_default=False)
        )

    async def add(self, agent: Agent) -> Agent:
        self.session.add(agent)
        await self.session.flush()
        return agent

    async def delete(self, agent: Agent) -> None:
        await self.session.delete(agent)
        await self.session.flush()
