"""SQL for operators: runs across every account, and a run's event summary.

No tenant filter on purpose — only the operator CLI reaches these queries.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select

from shoal.db.models import AgentRun, RunEvent
from shoal.db.models.runs import ACTIVE_STATUSES
from shoal.db.repository import RepositoryBase


class RunAdminRepository(RepositoryBase):
    async def list_runs(
        self, *, statuses: Sequence[str], account_id: uuid.UUID | None, limit: int
    ) -> Sequence[AgentRun]:
        """Runs newest first, optionally of some statuses and one account."""
        query = select(AgentRun)
        if statuses:
            query = query.where(AgentRun.status.in_(list(statuses)))
        if account_id is not None:
            query = query.where(AgentRun.account_id == account_id)
        query = query.order_by(AgentRun.created_at.desc(), AgentRun.id.desc()).limit(limit)
        return (await self.session.execute(query)).scalars().all()

    async def active_of_account(self, account_id: uuid.UUID) -> Sequence[AgentRun]:
        query = (
            select(AgentRun)
            .where(AgentRun.account_id == account_id, AgentRun.status.in_(ACTIVE_STATUSES))
            .order_by(AgentRun.created_at)
        )
        return (await self.session.execute(query)).scalars().all()

    async def last_events(self, run_id: uuid.UUID, *, limit: int) -> Sequence[RunEvent]:
        """The run's newest ``limit`` events, oldest first."""
        query = (
            select(RunEvent)
            .where(RunEvent.run_id == run_id)
            .order_by(RunEvent.seq.desc())
            .limit(limit)
        )
        rows = (await self.session.execute(query)).scalars().all()
        return list(reversed(rows))

    async def event_counts(self, run_id: uuid.UUID) -> dict[str, int]:
        """How many events of each type the run has."""
        query = (
            select(RunEvent.type, func.count())
            .where(RunEvent.run_id == run_id)
            .group_by(RunEvent.type)
        )
        return {str(kind): int(count) for kind, count in (await self.session.execute(query)).all()}
