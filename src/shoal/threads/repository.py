"""All SQL about projects, threads and messages.

Tenancy lives in one method per aggregate: :meth:`ProjectRepository.readable` and
:meth:`ThreadRepository.readable`. Each selects the rows a caller may read — those of the
accounts they are a member of (``member_account_ids``), plus anything in a public project —
together with an ``is_member`` flag that says whether they may also write. Messages are only
reached through a thread that was loaded this way.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    false,
    or_,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute

from shoal.accounts.repository import member_account_ids
from shoal.auth.principal import Principal
from shoal.db.models import Agent, AgentRun, Message, Project, RunEvent, Thread
from shoal.db.repository import Page, RepositoryBase
from shoal.errors import NotFound
from shoal.kit.ids import new_id
from shoal.kit.pagination import SeqCursor, TimeCursor
from shoal.kit.time import utcnow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Loaded(Generic[T]):
    """A row the caller may read; ``is_member`` says whether they may also write it."""

    row: T
    is_member: bool


def _is_member(
    principal: Principal | None, account_id: InstrumentedAttribute[uuid.UUID]
) -> ColumnElement[bool]:
    if principal is None:
        return false()
    return account_id.in_(member_account_ids(principal))


def _after(
    created_at: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[uuid.UUID],
    cursor: TimeCursor,
) -> ColumnElement[bool]:
    return or_(
        created_at < cursor.created_at, and_(created_at == cursor.created_at, ident < cursor.id)
    )


class ProjectRepository(RepositoryBase):
    def readable(self, principal: Principal | None) -> Select[Project, bool]:
        """THE tenant filter for projects: members' and public ones, with ``is_member``."""
        is_member = _is_member(principal, Project.account_id)
        return select(Project, is_member.label("is_member")).where(
            or_(is_member, Project.is_public.is_(True))
        )

    async def get_readable(
        self, project_id: uuid.UUID, principal: Principal | None
    ) -> Loaded[Project] | None:
        query = self.readable(principal).where(Project.project_id == project_id)
        row = (await self.session.execute(query)).one_or_none()
        return None if row is None else Loaded(row[0], bool(row[1]))

    async def page_for_account(
        self,
        principal: Principal,
        *,
        account_id: uuid.UUID,
        after: TimeCursor | None,
        limit: int,
    ) -> Page[Project]:
        """The account's projects, newest → oldest by ``(created_at, project_id)``."""
        query = self.readable(principal).where(Project.account_id == account_id)
        if after is not None:
            query = query.where(_after(Project.created_at, Project.project_id, after))
        query = query.order_by(Project.created_at.desc(), Project.project_id.desc())
        rows = [row[0] for row in (await self.session.execute(query.limit(limit + 1))).all()]
        if len(rows) <= limit:
            return Page(rows, None)
        last = rows[limit - 1]
        return Page(rows[:limit], TimeCursor(last.created_at, last.project_id).encode())

    async def create(self, *, account_id: uuid.UUID, values: dict[str, Any]) -> Project:
        now = utcnow()
        project = Project(account_id=account_id, created_at=now, updated_at=now, **values)
        self.session.add(project)
        await self.session.flush()
        return project

    async def update(self, project: Project, values: dict[str, Any]) -> Project:
        for key, value in values.items():
            setattr(project, key, value)
        project.updated_at = utcnow()
        await self.session.flush()
        return project

    async def delete(self, project_id: uuid.UUID) -> None:
        """Delete the project; the database cascades to its threads and their messages."""
        await self.session.execute(
            delete(Project)
            .where(Project.project_id == project_id)
            .execution_options(synchronize_session=False)
        )


class ThreadRepository(RepositoryBase):
    def readable(self, principal: Principal | None) -> Select[Thread, bool]:
        """THE tenant filter for threads: members' and those in public projects."""
        is_member = _is_member(principal, Thread.account_id)
        return (
            select(Thread, is_member.label("is_member"))
            .join(Project, Project.project_id == Thread.project_id)
            .where(or_(is_member, Project.is_public.is_(True)))
        )

    async def get_readable(
        self, thread_id: uuid.UUID, principal: Principal | None
    ) -> Loaded[Thread] | None:
        query = self.readable(principal).where(Thread.thread_id == thread_id)
        row = (await self.session.execute(query)).one_or_none()
        return None if row is None else Loaded(row[0], bool(row[1]))

    async def page_for_account(
        self,
        principal: Principal,
        *,
        account_id: uuid.UUID,
        project_id: uuid.UUID | None,
        after: TimeCursor | None,
        limit: int,
    ) -> Page[Thread]:
        """The account's threads (optionally of one project), newest → oldest."""
        query = self.readable(principal).where(Thread.account_id == account_id)
        if project_id is not None:
            query = query.where(Thread.project_id == project_id)
        if after is not None:
            query = query.where(_after(Thread.created_at, Thread.thread_id, after))
        query = query.order_by(Thread.created_at.desc(), Thread.thread_id.desc())
        rows = [row[0] for row in (await self.session.execute(query.limit(limit + 1))).all()]
        if len(rows) <= limit:
            return Page(rows, None)
        last = rows[limit - 1]
        return Page(rows[:limit], TimeCursor(last.created_at, last.thread_id).encode())

    async def create(
        self, *, project_id: uuid.UUID, account_id: uuid.UUID, values: dict[str, Any]
    ) -> Thread:
        now = utcnow()
        await self._check_agent(account_id, values)
        thread = Thread(
            project_id=project_id,
            account_id=account_id,
            created_at=now,
            updated_at=now,
            last_message_seq=0,
            **values,
        )
        self.session.add(thread)
        await self.session.flush()
        return thread

    async def update(self, thread: Thread, values: dict[str, Any]) -> Thread:
        await self._check_agent(thread.account_id, values)
        for key, value in values.items():
            setattr(thread, key, value)
        thread.updated_at = utcnow()
        await self.session.flush()
        return thread

    async def _check_agent(self, account_id: uuid.UUID, values: dict[str, Any]) -> None:
        """A thread may only name an agent of its own account (else: "Agent not found.")."""
        agent_id = values.get("agent_id")
        if agent_id is None:
            return
        found = await self.session.execute(
            select(Agent.agent_id).where(Agent.agent_id == agent_id, Agent.account_id == account_id)
        )
        if found.first() is None:
            raise NotFound("Agent not found.")

    async def ids_in_project(self, project_id: uuid.UUID) -> list[uuid.UUID]:
        result = await self.session.execute(
            select(Thread.thread_id).where(Thread.project_id == project_id)
        )
        return list(result.scalars().all())

    async def exists(self, thread_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            select(Thread.thread_id).where(Thread.thread_id == thread_id)
        )
        return result.first() is not None

    async def delete(self, thread_id: uuid.UUID) -> None:
        """Delete the thread; the database cascades to its messages."""
        await self.session.execute(
            delete(Thread)
            .where(Thread.thread_id == thread_id)
            .execution_options(synchronize_session=False)
        )


class MessageRepository(RepositoryBase):
    """Messages of a thread the caller already loaded through ``ThreadRepository.readable``."""

    async def next_seq(self, thread_id: uuid.UUID) -> int:
        """Allocate the thread's next message ``seq`` (1, 2, 3, …).

        One atomic ``UPDATE … RETURNING``: on Postgres the row lock serialises concurrent
        writers until commit, on SQLite the write transaction (``BEGIN IMMEDIATE``) does; a
        rolled-back writer rolls its increment back too, so there are no gaps.
        """
        result = await self.session.execute(
            update(Thread)
            .where(Thread.thread_id == thread_id)
            .values(last_message_seq=Thread.last_message_seq + 1, updated_at=utcnow())
            .returning(Thread.last_message_seq)
            .execution_options(synchronize_session=False)
        )
        return int(result.scalar_one())

    async def add(
        self,
        thread_id: uuid.UUID,
        *,
        type: str,
        content: dict[str, Any],
        is_llm_message: bool = True,
        agent_run_id: uuid.UUID | None = None,
        metadata: dict[str, Any] | None = None,
        message_id: uuid.UUID | None = None,
    ) -> Message:
        """Store a message at the end of the thread (its ``seq`` is allocated here). The engine
        passes ``message_id`` when it announced the id in events before storing the message."""
        seq = await self.next_seq(thread_id)
        message = Message(
            message_id=message_id or new_id(),
            thread_id=thread_id,
            seq=seq,
            type=type,
            content=content,
            is_llm_message=is_llm_message,
            agent_run_id=agent_run_id,
            meta=dict(metadata or {}),
            created_at=utcnow(),
        )
        self.session.add(message)
        await self.session.flush()
        return message

    async def llm_messages(self, thread_id: uuid.UUID) -> Sequence[Message]:
        """Every message the model sees, oldest first (the engine's prompt history)."""
        result = await self.session.execute(
            select(Message)
            .where(Message.thread_id == thread_id, Message.is_llm_message.is_(True))
            .order_by(Message.seq.asc())
        )
        return result.scalars().all()

    async def get(self, thread_id: uuid.UUID, message_id: uuid.UUID) -> Message | None:
        result = await self.session.execute(
            select(Message).where(Message.thread_id == thread_id, Message.message_id == message_id)
        )
        return result.scalar_one_or_none()

    @staticmethod
    def _newest_message_event(thread_id: uuid.UUID, column: Any) -> Any:
        """``column`` of the thread's newest stored ``message`` event, as a scalar subquery."""
        return (
            select(column)
            .join(AgentRun, AgentRun.id == RunEvent.run_id)
            .where(AgentRun.thread_id == thread_id, RunEvent.type == "message")
            .order_by(AgentRun.created_at.desc(), AgentRun.id.desc(), RunEvent.seq.desc())
            .limit(1)
            .scalar_subquery()
        )

    async def stream_position(self, thread_id: uuid.UUID) -> tuple[uuid.UUID, int] | None:
        """(run_id, seq) of the thread's newest stored ``message`` event: the thread stream
        continues right after the stored history from there."""
        result = await self.session.execute(
            select(
                self._newest_message_event(thread_id, RunEvent.run_id),
                self._newest_message_event(thread_id, RunEvent.seq),
            )
        )
        row = result.first()
        return None if row is None or row[0] is None else (row[0], int(row[1]))

    async def page_and_position(
        self, thread_id: uuid.UUID, *, after: SeqCursor | None, limit: int
    ) -> tuple[Page[Message], tuple[uuid.UUID, int] | None]:
        """A page of the thread's messages (oldest → newest by ``seq``) and the
        :meth:`stream_position`, read by ONE statement so both see the same snapshot (two
        statements under READ COMMITTED could straddle a commit, and the cursor would then
        skip or repeat a message)."""
        query = select(
            Message,
            self._newest_message_event(thread_id, RunEvent.run_id),
            self._newest_message_event(thread_id, RunEvent.seq),
        ).where(Message.thread_id == thread_id)
        if after is not None:
            query = query.where(Message.seq > after.seq)
        query = query.order_by(Message.seq.asc()).limit(limit + 1)
        found = list((await self.session.execute(query)).all())
        if not found:  # nothing on this page to be consistent with
            return Page([], None), await self.stream_position(thread_id)
        first = found[0]
        position = None if first[1] is None else (first[1], int(first[2]))
        rows = [r[0] for r in found]
        if len(rows) <= limit:
            return Page(rows, None), position
        return Page(rows[:limit], SeqCursor(rows[limit - 1].seq).encode()), position
