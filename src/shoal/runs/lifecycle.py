"""State transitions shared by the API, the worker and the sweeper.

Every transition writes the run row and its ``run_status`` event in one transaction; the live
publication and the wake-up of the project's next queued run happen after that commit. Only
these five statuses exist: queued → running → completed | failed | stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.db.models import AgentRun
from shoal.kit.time import utcnow
from shoal.observability import metrics
from shoal.runs.repository import NewEvent, RunRepository, event_dict
from shoal.runs.runtime import Runtime, run_stream

TERMINAL = ("completed", "failed", "stopped")


def status_data(run: AgentRun) -> dict[str, Any]:
    return {"status": run.status, "error": run.error, "finish_reason": run.finish_reason}


async def write_events(
    session: AsyncSession,
    runtime: Runtime,
    run: AgentRun,
    events: Sequence[tuple[str, dict[str, Any]]],
    *,
    first_seq: int | None = None,
    allocated: bool = False,
) -> list[dict[str, Any]]:
    """Store events (allocating seqs unless the caller did) and publish them after commit.
    ``allocated``: the caller already moved the row's ``last_event_seq`` past these seqs in
    this transaction."""
    repo = RunRepository(session)
    if first_seq is None:
        first_seq = await repo.allocate_seq(run.id, len(events))
        allocated = True
    now = utcnow()
    stored = [NewEvent(first_seq + i, kind, data, now) for i, (kind, data) in enumerate(events)]
    await repo.insert_events(run.id, stored, bump=not allocated)
    wire = [event_dict(run, e, run_id=run.id, thread_id=run.thread_id) for e in stored]
    runtime.after_commit_publish(session, run.id, wire)
    return wire


async def finish(
    session: AsyncSession,
    runtime: Runtime,
    run: AgentRun,
    *,
    status: str,
    error: dict[str, str] | None = None,
    finish_reason: str | None = None,
    first_seq: int | None = None,
) -> None:
    """Move ``run`` to a terminal status, write its last event, wake the project's next run."""
    assert status in TERMINAL
    repo = RunRepository(session)
    completed_at = utcnow()
    started_at = run.started_at
    values: dict[str, Any] = {}
    if first_seq is not None:  # the caller's seq is past every stored one (it holds the run)
        values["last_event_seq"] = first_seq
    await repo.set_status(
        run,
        status=status,
        error=error,
        finish_reason=finish_reason,
        completed_at=completed_at,
        lease_expires_at=None,
        **values,
    )
    await write_events(
        session,
        runtime,
        run,
        [("run_status", status_data(run))],
        first_seq=first_seq,
        allocated=first_seq is not None,
    )
    wake: list[uuid.UUID] = []
    candidates = [await repo.next_queued(run.project_id)]
    if runtime.settings.concurrency_overflow == "queue":
        # A slot of the account's cap is free: its oldest waiting run elsewhere may go.
        candidates.append(await repo.next_queued_of_account(run.account_id))
    for nxt in candidates:
        if nxt is not None and nxt.id not in wake and nxt.id != run.id:
            wake.append(nxt.id)
    await repo.mark_woken(wake)
    runtime.after_commit_wake(session, wake)

    async def _expire() -> None:
        await runtime.bus.expire(run_stream(run.id), ttl_seconds=600)

    async def _count() -> None:
        # Counted once the terminal write is durable (a fenced-out writer never counts).
        metrics.RUNS_TOTAL.labels(status).inc()
        if started_at is not None:  # a run that never started has no duration
            metrics.RUN_DURATION_SECONDS.observe(
                max(0.0, (completed_at - started_at).total_seconds())
            )

    from shoal.db.session import on_commit

    on_commit(session, _expire)
    on_commit(session, _count)
