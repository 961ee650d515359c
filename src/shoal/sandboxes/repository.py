"""All SQL about project sandboxes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, false, or_, select, update
from sqlalchemy.exc import IntegrityError

from shoal.accounts.repository import member_account_ids
from shoal.auth.principal import Principal
from shoal.db.models import AgentRun, Project, Sandbox
from shoal.db.repository import RepositoryBase
from shoal.kit.time import utcnow


def _is_member(principal: Principal | None) -> ColumnElement[bool]:
    if principal is None:
        return false()
    return Project.account_id.in_(member_account_ids(principal))


class SandboxRepository(RepositoryBase):
    async def readable_project(
        self, project_id: uuid.UUID, principal: Principal | None
    ) -> tuple[Project, bool] | None:
        """THE tenant filter here: the project if the caller is a member of its account or it
        is public, with whether they are a member (may write)."""
        is_member = _is_member(principal)
        query = select(Project, is_member.label("is_member")).where(
            Project.project_id == project_id, or_(is_member, Project.is_public.is_(True))
        )
        row = (await self.session.execute(query)).one_or_none()
        return None if row is None else (row[0], bool(row[1]))

    async def readable(
        self, sandbox_id: uuid.UUID, principal: Principal | None
    ) -> tuple[Sandbox, Project, bool] | None:
        """The sandbox if the caller may read its project (see :meth:`readable_project`)."""
        is_member = _is_member(principal)
        query = (
            select(Sandbox, Project, is_member.label("is_member"))
            .join(Project, Project.project_id == Sandbox.project_id)
            .where(Sandbox.sandbox_id == sandbox_id, or_(is_member, Project.is_public.is_(True)))
        )
        row = (await self.session.execute(query)).one_or_none()
        return None if row is None else (row[0], row[1], bool(row[2]))

    async def get(self, sandbox_id: uuid.UUID) -> Sandbox | None:
        return await self.session.get(Sandbox, sandbox_id)

    async def for_project(self, project_id: uuid.UUID) -> Sandbox | None:
        query = select(Sandbox).where(Sandbox.project_id == project_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get_or_create(self, project: Project, *, provider: str) -> Sandbox:
        """The project's sandbox row, created in state ``stopped`` if absent (race-safe: the
        unique ``project_id`` makes a concurrent creator's insert the winner)."""
        existing = await self.for_project(project.project_id)
        if existing is not None:
            return existing
        now = utcnow()
        row = Sandbox(
            project_id=project.project_id,
            account_id=project.account_id,
            provider=provider,
            state="stopped",
            created_at=now,
            updated_at=now,
            last_active_at=now,
        )
        try:
            async with self.session.begin_nested():
                self.session.add(row)
                await self.session.flush()
        except IntegrityError:
            found = await self.for_project(project.project_id)
            if found is None:
                raise
            return found
        return row

    async def set(self, sandbox_id: uuid.UUID, **values: Any) -> None:
        values.setdefault("updated_at", utcnow())
        await self.session.execute(
            update(Sandbox)
            .where(Sandbox.sandbox_id == sandbox_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def touch(self, sandbox_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Sandbox)
            .where(Sandbox.sandbox_id == sandbox_id)
            .values(last_active_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def idle(self, *, before: datetime, limit: int = 100) -> list[Sandbox]:
        """Started sandboxes unused since ``before`` whose project has no running run."""
        running = exists().where(
            AgentRun.project_id == Sandbox.project_id, AgentRun.status == "running"
        )
        query = (
            select(Sandbox)
            .where(Sandbox.state == "started", Sandbox.last_active_at < before, ~running)
            .order_by(Sandbox.last_active_at)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars().all())

    async def project(self, project_id: uuid.UUID) -> Project | None:
        return await self.session.get(Project, project_id)
