"""The sweeper: no run stays ``running`` or ``queued`` forever.

Runs in every worker and in embedded ``serve``; safe to run in many processes at once (each
transition is a conditional update, so only one sweeper wins it). Duties, every interval:

1. runs whose lease lapsed → ``failed``/``worker_lost`` (at most once: a tool with side effects
   is never silently re-run); the live buffer's unflushed tail is stored first;
2. claimable queued runs whose last wake-up is older than the requeue interval → woken again;
3. queued runs older than the queue timeout → ``failed``/``queue_timeout``;
4. events past retention and idempotency keys past 24 h are deleted.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import structlog
from sqlalchemy import update

from shoal.db.models import AgentRun
from shoal.db.session import unit_of_work
from shoal.kit.time import utcnow
from shoal.observability import metrics
from shoal.runs import lifecycle
from shoal.runs.repository import NewEvent, RunRepository
from shoal.runs.runtime import Runtime, run_stream
from shoal.runs.service import IDEMPOTENCY_TTL

log = structlog.get_logger(__name__)


class Sweeper:
    def __init__(self, runtime: Runtime, *, worker_id: str) -> None:
        self.runtime = runtime
        self.worker_id = worker_id
        self.lease_expiries = 0
        self._last_purge = 0.0

    async def run_forever(self) -> None:
        interval = self.runtime.settings.sweeper_interval_seconds
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep_failed")
            await asyncio.sleep(interval)

    async def sweep_once(self) -> None:
        await self.fail_lapsed()
        await self.rewake_stale()
        await self.fail_timed_out()
        await self.purge()

    async def fail_lapsed(self, *, orphans_of: str | None = None) -> int:
        """Fail runs whose lease lapsed (or, at embedded start-up, every running run not held
        by ``orphans_of``, the current process)."""
        now = utcnow()
        async with self.runtime.session_factory() as session:
            repo = RunRepository(session)
            if orphans_of is None:
                candidates = [(r.id, r.attempt) for r in await repo.lapsed(now)]
            else:
                candidates = [
                    (r.id, r.attempt)
                    for r in await repo.lapsed(now + timedelta(days=3650))
                    if r.worker_id != orphans_of
                ]
        failed = 0
        for run_id, attempt in candidates:
            if await self._fail_one(run_id, attempt, require_lapsed=orphans_of is None):
                failed += 1
        self.lease_expiries += failed
        return failed

    async def _fail_one(self, run_id: uuid.UUID, attempt: int, *, require_lapsed: bool) -> bool:
        now = utcnow()
        async with unit_of_work(self.runtime.session_factory) as session:
            conditions = [
                AgentRun.id == run_id,
                AgentRun.attempt == attempt,
                AgentRun.status == "running",
            ]
            if require_lapsed:
                conditions.append(AgentRun.lease_expires_at < now)
            # Taking the run away fences the old holder out of every later write.
            result = await session.execute(
                update(AgentRun)
                .where(*conditions)
                .values(status="failed", updated_at=now)
                .returning(AgentRun.last_event_seq)
            )
            row = result.first()
            if row is None:
                return False
            last_seq = int(row[0])
            tail = await self.runtime.bus.buffered(run_stream(run_id), after=last_seq)
            recovered = _contiguous(tail, last_seq)
            repo = RunRepository(session)
            if recovered:
                await repo.insert_events(run_id, recovered)
            run = await repo.get(run_id)
            assert run is not None
            await lifecycle.finish(
                session,
                self.runtime,
                run,
                status="failed",
                error={
                    "code": "worker_lost",
                    "message": "The worker running this run stopped responding.",
                },
                first_seq=(recovered[-1].seq if recovered else last_seq) + 1,
            )
        metrics.LEASE_EXPIRIES_TOTAL.inc()
        log.warning("run_worker_lost", run_id=str(run_id), attempt=attempt)
        return True

    async def rewake_stale(self) -> int:
        settings = self.runtime.settings
        cutoff = utcnow() - timedelta(seconds=settings.requeue_seconds)
        async with unit_of_work(self.runtime.session_factory) as session:
            repo = RunRepository(session)
            stale = [r.id for r in await repo.stale_queued(woken_before=cutoff)]
            await repo.mark_woken(stale)
        if stale:
            log.info("runs_rewoken", count=len(stale))
            await self.runtime.wake(stale)
        return len(stale)

    async def fail_timed_out(self) -> int:
        settings = self.runtime.settings
        cutoff = utcnow() - timedelta(seconds=settings.queue_timeout_seconds)
        async with self.runtime.session_factory() as session:
            ids = [r.id for r in await RunRepository(session).queued_before(cutoff)]
        failed = 0
        for run_id in ids:
            async with unit_of_work(self.runtime.session_factory) as session:
                repo = RunRepository(session)
                run = await repo.get(run_id, for_update=True)
                if run is None or run.status != "queued":
                    continue
                await lifecycle.finish(
                    session,
                    self.runtime,
                    run,
                    status="failed",
                    error={
                        "code": "queue_timeout",
                        "message": "The run waited too long in the queue and never started.",
                    },
                )
                failed += 1
        return failed

    async def purge(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_purge < 3600 and self._last_purge:
            return
        self._last_purge = loop.time()
        settings = self.runtime.settings
        async with unit_of_work(self.runtime.session_factory) as session:
            repo = RunRepository(session)
            await repo.purge_events(utcnow() - timedelta(days=settings.event_retention_days))
            await repo.purge_idempotency(utcnow() - IDEMPOTENCY_TTL)


def _contiguous(tail: list[dict[str, object]], last_seq: int) -> list[NewEvent]:
    """The buffered events continuing exactly after ``last_seq`` (stop at the first gap)."""
    from datetime import datetime

    out: list[NewEvent] = []
    expected = last_seq + 1
    for event in sorted(tail, key=lambda e: int(e["seq"])):  # type: ignore[call-overload]
        seq = int(event["seq"])  # type: ignore[call-overload]
        if seq < expected:
            continue
        if seq != expected:
            break
        created = event.get("created_at")
        out.append(
            NewEvent(
                seq,
                str(event["type"]),
                dict(event.get("data") or {}),  # type: ignore[call-overload]
                datetime.fromisoformat(str(created).replace("Z", "+00:00"))
                if created
                else utcnow(),
            )
        )
        expected += 1
    return out
