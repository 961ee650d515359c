"""All SQL about runs, their event logs and idempotency records.

Fencing: every write a worker makes after its claim goes through :meth:`RunRepository.fence`
first, a conditional update ``WHERE id=? AND attempt=? AND status='running'`` that also renews
the lease. If it matches no row the worker has lost the run (the sweeper failed it, or a stop
finished it) and :class:`Fenced` aborts the transaction, so a stale attempt writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    case,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from shoal.accounts.repository import member_account_ids
from shoal.auth.principal import Principal
from shoal.db.models import AgentRun, IdempotencyKey, Project, RunEvent
from shoal.db.models.runs import ACTIVE_STATUSES
from shoal.db.repository import Page, RepositoryBase, newest_first
from shoal.kit.time import utcnow

TERMINAL_STATUSES = ("completed", "failed", "stopped")
# The worker's hot statements (fence, event inserts) go to the tables directly: Core DML skips
# the ORM's bulk-statement machinery (and its in-session evaluation), a large share of their
# CPU; the sessions issuing them hold no run objects to keep in step.
_RUNS = cast(Table, AgentRun.__table__)
_EVENTS = cast(Table, RunEvent.__table__)


class Fenced(Exception):
    """This worker no longer holds the run (stale attempt, stopped or swept)."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


def event_dict(
    run: AgentRun | None, event: RunEvent | NewEvent, *, run_id: uuid.UUID, thread_id: uuid.UUID
) -> dict[str, Any]:
    """The wire shape of an event (DESIGN.md §3)."""
    return {
        "seq": event.seq,
        "type": event.type,
        "run_id": str(run_id),
        "thread_id": str(thread_id),
        "data": event.data,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
    }


class RunRepository(RepositoryBase):
    # -- reads with tenancy -------------------------------------------------------------------
    def readable(self, principal: Principal | None) -> Select[AgentRun, bool]:
        """THE tenant filter for runs: members' runs and runs of public projects."""
        is_member: ColumnElement[bool] = (
            false() if principal is None else AgentRun.account_id.in_(member_account_ids(principal))
        )
        return (
            select(AgentRun, is_member.label("is_member"))
            .join(Project, Project.project_id == AgentRun.project_id)
            .where(or_(is_member, Project.is_public.is_(True)))
        )

    async def get_readable(
        self, principal: Principal | None, run_id: uuid.UUID
    ) -> tuple[AgentRun, bool] | None:
        query = self.readable(principal).where(AgentRun.id == run_id)
        row = (await self.session.execute(query)).one_or_none()
        return None if row is None else (row[0], bool(row[1]))

    async def get(self, run_id: uuid.UUID, *, for_update: bool = False) -> AgentRun | None:
        query = select(AgentRun).where(AgentRun.id == run_id)
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def refresh(self, run: AgentRun) -> AgentRun:
        await self.session.refresh(run)
        return run

    async def page_for_thread(
        self, thread_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> Page[AgentRun]:
        return await newest_first(
            self.session,
            select(AgentRun).where(AgentRun.thread_id == thread_id),
            created_at=AgentRun.created_at,
            ident=AgentRun.id,
            limit=limit,
            cursor=cursor,
        )

    async def active_in_project(self, project_id: uuid.UUID) -> Sequence[AgentRun]:
        result = await self.session.execute(
            select(AgentRun)
            .where(AgentRun.project_id == project_id, AgentRun.status.in_(ACTIVE_STATUSES))
            .order_by(AgentRun.created_at, AgentRun.id)
        )
        return result.scalars().all()

    async def active_in_thread(self, thread_id: uuid.UUID) -> Sequence[AgentRun]:
        result = await self.session.execute(
            select(AgentRun)
            .where(AgentRun.thread_id == thread_id, AgentRun.status.in_(ACTIVE_STATUSES))
            .order_by(AgentRun.created_at, AgentRun.id)
        )
        return result.scalars().all()

    async def count_active_for_account(self, account_id: uuid.UUID) -> int:
        """Active runs counting against the account cap; a run asked to stop (e.g. being
        interrupted by the start now checking the cap) is on its way out and not counted."""
        result = await self.session.execute(
            select(func.count())
            .select_from(AgentRun)
            .where(
                AgentRun.account_id == account_id,
                AgentRun.status.in_(ACTIVE_STATUSES),
                AgentRun.stop_requested_at.is_(None),
            )
        )
        return int(result.scalar_one())

    async def count_running_for_account(self, account_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.count())
            .select_from(AgentRun)
            .where(AgentRun.account_id == account_id, AgentRun.status == "running")
        )
        return int(result.scalar_one())

    async def count_queued(self) -> int:
        """All queued runs (``shoal_queue_depth``; the status index keeps it cheap)."""
        result = await self.session.execute(
            select(func.count()).select_from(AgentRun).where(AgentRun.status == "queued")
        )
        return int(result.scalar_one())

    async def next_queued_of_account(self, account_id: uuid.UUID) -> AgentRun | None:
        """The account's oldest queued run in a project with nothing running."""
        running = select(AgentRun.project_id).where(AgentRun.status == "running")
        result = await self.session.execute(
            select(AgentRun)
            .where(
                AgentRun.account_id == account_id,
                AgentRun.status == "queued",
                AgentRun.stop_requested_at.is_(None),
                AgentRun.project_id.not_in(running),
            )
            .order_by(AgentRun.created_at, AgentRun.id)
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def runs_of_thread(self, thread_id: uuid.UUID) -> Sequence[AgentRun]:
        """All runs of a thread, oldest first (the thread stream's order)."""
        result = await self.session.execute(
            select(AgentRun)
            .where(AgentRun.thread_id == thread_id)
            .order_by(AgentRun.created_at, AgentRun.id)
        )
        return result.scalars().all()

    # -- writes -------------------------------------------------------------------------------
    async def add(self, run: AgentRun) -> AgentRun:
        self.session.add(run)
        await self.session.flush()
        return run

    async def claim(
        self, run_id: uuid.UUID, *, worker_id: str, lease_seconds: float, reserve: int = 0
    ) -> AgentRun | None:
        """``queued → running`` with a lease and a new attempt, atomically, in one statement
        that returns the fresh row. ``reserve`` seqs are allocated with it (the last of them is
        the row's ``last_event_seq``). None when the run is not claimable (taken, stopped,
        finished) or its project already has a running run."""
        now = utcnow()
        statement = (
            update(AgentRun)
            .where(
                AgentRun.id == run_id,
                AgentRun.status == "queued",
                AgentRun.stop_requested_at.is_(None),
            )
            .values(
                status="running",
                attempt=AgentRun.attempt + 1,
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=func.coalesce(AgentRun.started_at, now),
                last_event_seq=AgentRun.last_event_seq + reserve,
                updated_at=now,
            )
            .returning(AgentRun)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        # SQLite undoes just the failed statement; Postgres aborts the whole transaction
        # unless the statement runs inside a savepoint.
        savepoint = self.session.get_bind().dialect.name != "sqlite"
        try:
            if not savepoint:
                return (await self.session.execute(statement)).scalar_one_or_none()
            async with self.session.begin_nested():
                return (await self.session.execute(statement)).scalar_one_or_none()
        except IntegrityError:
            return None  # another run of the project is running; its end wakes this one

    async def fence(
        self, run_id: uuid.UUID, attempt: int, *, lease_seconds: float, last_seq: int = 0
    ) -> datetime | None:
        """Renew the lease if this attempt still holds the run; return ``stop_requested_at``.
        Raise :class:`Fenced` otherwise. ``last_seq``: the highest seq this transaction stores
        (``last_event_seq`` moves up to it in the same statement)."""
        now = utcnow()
        c = _RUNS.c
        values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_seconds)}
        if last_seq:
            values["last_event_seq"] = case(
                (c.last_event_seq < last_seq, last_seq), else_=c.last_event_seq
            )
        result = await self.session.execute(
            update(_RUNS)
            .where(c.id == run_id, c.attempt == attempt, c.status == "running")
            .values(**values)
            .returning(c.stop_requested_at)
        )
        row = result.first()
        if row is None:
            raise Fenced(f"run {run_id} attempt {attempt} is no longer held")
        stop: datetime | None = row[0]
        return stop

    async def fence_many(
        self, held: Sequence[tuple[uuid.UUID, int]], *, lease_seconds: float
    ) -> dict[uuid.UUID, datetime | None]:
        """:meth:`fence` for many attempts in one statement (a worker's heartbeat of all its
        runs): ``{run id: stop_requested_at}`` for those still held; an attempt missing from
        the answer has lost its run."""
        if not held:
            return {}
        now = utcnow()
        c = _RUNS.c
        result = await self.session.execute(
            update(_RUNS)
            .where(tuple_(c.id, c.attempt).in_(list(held)), c.status == "running")
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            .returning(c.id, c.stop_requested_at)
        )
        return {row[0]: row[1] for row in result.all()}

    async def allocate_seq(self, run_id: uuid.UUID, count: int = 1) -> int:
        """Reserve ``count`` seqs; returns the first. Call inside the writer's transaction
        (fenced for workers; the API and sweeper write only while no worker holds the run)."""
        result = await self.session.execute(
            update(AgentRun)
            .where(AgentRun.id == run_id)
            .values(last_event_seq=AgentRun.last_event_seq + count)
            .returning(AgentRun.last_event_seq)
        )
        return int(result.scalar_one()) - count + 1

    async def insert_events(
        self, run_id: uuid.UUID, events: Sequence[NewEvent], *, bump: bool = True
    ) -> None:
        """Store events whose seqs the caller allocated; keeps ``last_event_seq`` in step
        (``bump=False``: the caller already moved it in this transaction)."""
        if not events:
            return
        await self.session.execute(
            insert(_EVENTS),
            [
                {
                    "run_id": run_id,
                    "seq": e.seq,
                    "type": e.type,
                    "data": e.data,
                    "created_at": e.created_at,
                }
                for e in events
            ],
        )
        if bump:
            c = _RUNS.c
            await self.session.execute(
                update(_RUNS)
                .where(c.id == run_id, c.last_event_seq < events[-1].seq)
                .values(last_event_seq=events[-1].seq)
            )

    async def events_after(
        self, run_id: uuid.UUID, after: int, *, limit: int = 500, until: int | None = None
    ) -> Sequence[RunEvent]:
        query = select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.seq > after)
        if until is not None:
            query = query.where(RunEvent.seq <= until)
        result = await self.session.execute(query.order_by(RunEvent.seq).limit(limit))
        return result.scalars().all()

    async def set_status(self, run: AgentRun, **values: Any) -> None:
        """Update the row and ``run`` from it in one statement (UPDATE … RETURNING)."""
        values.setdefault("updated_at", utcnow())
        result = await self.session.execute(
            update(AgentRun)
            .where(AgentRun.id == run.id)
            .values(**values)
            .returning(AgentRun)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        result.scalars().all()  # loading the returned row refreshes ``run`` (same identity)

    async def request_stop(self, run_id: uuid.UUID) -> None:
        now = utcnow()
        await self.session.execute(
            update(AgentRun)
            .where(AgentRun.id == run_id, AgentRun.stop_requested_at.is_(None))
            .values(stop_requested_at=now, updated_at=now)
        )

    async def add_usage(
        self, run_id: uuid.UUID, *, prompt_tokens: int, completion_tokens: int, cost_micro_usd: int
    ) -> None:
        c = _RUNS.c
        await self.session.execute(
            update(_RUNS)
            .where(c.id == run_id)
            .values(
                prompt_tokens=c.prompt_tokens + prompt_tokens,
                completion_tokens=c.completion_tokens + completion_tokens,
                cost_micro_usd=c.cost_micro_usd + cost_micro_usd,
            )
        )

    async def next_queued(self, project_id: uuid.UUID) -> AgentRun | None:
        result = await self.session.execute(
            select(AgentRun)
            .where(
                AgentRun.project_id == project_id,
                AgentRun.status == "queued",
                AgentRun.stop_requested_at.is_(None),
            )
            .order_by(AgentRun.created_at, AgentRun.id)
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def mark_woken(self, run_ids: Sequence[uuid.UUID]) -> None:
        """Note that these runs are being woken (the sweeper re-wakes only stale ones). A row
        locked by another transaction is skipped, not waited for: that is a worker claiming
        it, which may itself be waiting for this transaction (the project's running run
        ending here) — waiting would deadlock."""
        if run_ids:
            free = (
                select(AgentRun.id)
                .where(AgentRun.id.in_(run_ids))
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            await self.session.execute(
                update(AgentRun).where(AgentRun.id.in_(free)).values(last_wakeup_at=utcnow())
            )

    # -- sweeper ------------------------------------------------------------------------------
    async def lapsed(self, now: datetime, *, limit: int = 100) -> Sequence[AgentRun]:
        result = await self.session.execute(
            select(AgentRun)
            .where(AgentRun.status == "running", AgentRun.lease_expires_at < now)
            .limit(limit)
        )
        return result.scalars().all()

    async def running_ids(self) -> Sequence[uuid.UUID]:
        result = await self.session.execute(select(AgentRun.id).where(AgentRun.status == "running"))
        return result.scalars().all()

    async def stale_queued(self, *, woken_before: datetime, limit: int = 200) -> Sequence[AgentRun]:
        """Queued runs that could run now (no running run in their project) but whose last
        wake-up is old — the wake-up was lost."""
        running = select(AgentRun.project_id).where(AgentRun.status == "running")
        result = await self.session.execute(
            select(AgentRun)
            .where(
                AgentRun.status == "queued",
                AgentRun.project_id.not_in(running),
                or_(AgentRun.last_wakeup_at.is_(None), AgentRun.last_wakeup_at < woken_before),
            )
            .order_by(AgentRun.created_at)
            .limit(limit)
        )
        runs = result.scalars().all()
        seen: set[uuid.UUID] = set()
        first_per_project = []
        for run in runs:  # only the oldest queued run of a project can start
            if run.project_id not in seen:
                seen.add(run.project_id)
                first_per_project.append(run)
        return first_per_project

    async def queued_before(
        self, created_before: datetime, *, limit: int = 200
    ) -> Sequence[AgentRun]:
        result = await self.session.execute(
            select(AgentRun)
            .where(AgentRun.status == "queued", AgentRun.created_at < created_before)
            .limit(limit)
        )
        return result.scalars().all()

    async def purge_events(self, finished_before: datetime) -> int:
        expired = select(AgentRun.id).where(
            AgentRun.status.in_(TERMINAL_STATUSES), AgentRun.completed_at < finished_before
        )
        result = await self.session.execute(delete(RunEvent).where(RunEvent.run_id.in_(expired)))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- idempotency --------------------------------------------------------------------------
    async def idempotency_get(
        self, account_id: uuid.UUID, route: str, key: str, *, newer_than: datetime
    ) -> IdempotencyKey | None:
        result = await self.session.execute(
            select(IdempotencyKey).where(
                IdempotencyKey.account_id == account_id,
                IdempotencyKey.route == route,
                IdempotencyKey.key == key,
                IdempotencyKey.created_at >= newer_than,
            )
        )
        return result.scalar_one_or_none()

    async def idempotency_put(self, record: IdempotencyKey, *, expired_before: datetime) -> None:
        """Remember a response. A concurrent request with the same key makes this raise
        IntegrityError (the primary key), so only one of them creates a run."""
        await self.session.execute(
            delete(IdempotencyKey).where(
                and_(
                    IdempotencyKey.account_id == record.account_id,
                    IdempotencyKey.route == record.route,
                    IdempotencyKey.key == record.key,
                    IdempotencyKey.created_at < expired_before,
                )
            )
        )
        self.session.add(record)
        await self.session.flush()

    async def purge_idempotency(self, before: datetime) -> None:
        await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
