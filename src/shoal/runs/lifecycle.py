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
) -> list[dict[str, Any]]:
    """Store events (allocating seqs unless the caller did) and publish them after commit."""
    repo = RunRepository(session)
    if first_seq is None:
        first_seq = await repo.allocate_seq(run.id, len(events))
    now = utcnow()
    stored = [NewEvent(first_seq + i, kind, data, now) for i, (kind, data) in enumerate(events)]
    await repo.insert_events(run.id, stored)
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
    await repo.set_status(
        run,
        status=status,
        error=error,
        finish_reason=finish_reason,
        completed_at=utcnow(),
        lease_expires_at=None,
    )
    await write_events(
        session, runtime, run, [("run_status", status_data(run))], first_seq=first_seq
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

    from shoal.db.session import on_commit

    on_commit(session, _expire)
