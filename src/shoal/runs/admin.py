"""Operator actions on runs (`shoal runs list|show|stop`) and account suspension's run part.

Stopping goes through :func:`shoal.runs.service.stop`, the same path as the API: a queued run
stops at once; a running one gets ``stop_requested_at`` plus a control signal on the bus. A
CLI process on embedded defaults has its own in-memory bus, so its signal reaches nobody — but
the worker's heartbeat reads ``stop_requested_at`` every ``SHOAL_RUN_HEARTBEAT_SECONDS``, so
the run still stops within one heartbeat. With Redis the signal stops it at once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shoal.accounts import admin as account_admin
from shoal.config import Settings
from shoal.db.models import Account, AgentRun
from shoal.db.models.runs import ACTIVE_STATUSES, RUN_STATUSES
from shoal.errors import BadRequest, NotFound
from shoal.kit.ids import parse_id
from shoal.runs import service as run_service
from shoal.runs.admin_repository import RunAdminRepository
from shoal.runs.repository import RunRepository
from shoal.runs.runtime import Runtime
from shoal.runs.schemas import RunRead

_DELTAS = ("text_delta", "reasoning_delta", "tool_output_delta")
_SCAN_EVENTS = 500  # how far back `show` looks to fold deltas into their last lines
SUMMARY_CHARS = 100


@dataclass(frozen=True, slots=True)
class EventLine:
    """One line of a run's event summary; consecutive deltas fold into one (``count``)."""

    first_seq: int
    last_seq: int
    type: str
    created_at: datetime
    summary: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: RunRead
    account_id: uuid.UUID
    worker_id: str | None
    lease_expires_at: datetime | None
    event_counts: dict[str, int]
    last_events: list[EventLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Suspension:
    account: Account
    newly_suspended: bool
    stopped_run_ids: list[uuid.UUID]


@asynccontextmanager
async def operator_runtime(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Runtime]:
    """A Runtime (bus + broker, no executor) for a CLI process that changes runs."""
    from shoal.runs.host import RunHost

    host = RunHost.create(settings, session_factory, execute=False)
    try:
        yield host.runtime
    finally:
        await host.stop(drain_timeout=0)


def _statuses(status: str | None) -> list[str]:
    if status is None:
        return []
    wanted = [part.strip().lower() for part in status.split(",") if part.strip()]
    out: list[str] = []
    for name in wanted:
        if name == "active":
            out.extend(ACTIVE_STATUSES)
        elif name in RUN_STATUSES:
            out.append(name)
        else:
            choices = ", ".join((*RUN_STATUSES, "active"))
            raise BadRequest(f"Unknown run status {name!r}; use one of {choices}.")
    return out


async def list_runs(
    session: AsyncSession, *, status: str | None, account_id: str | None, limit: int
) -> Sequence[AgentRun]:
    """Runs of every account, newest first (``status`` may be comma-separated or ``active``)."""
    if not 1 <= limit <= 10_000:
        raise BadRequest("--limit must be between 1 and 10000.")
    account = None
    if account_id is not None:
        account = (await account_admin.get_account(session, account_id)).account_id
    return await RunAdminRepository(session).list_runs(
        statuses=_statuses(status), account_id=account, limit=limit
    )


async def _get_run(session: AsyncSession, run_id: str) -> AgentRun:
    parsed = parse_id(run_id)
    if parsed is None:
        raise NotFound(f"{run_id!r} is not a run id (a UUID).")
    run = await RunRepository(session).get(parsed)
    if run is None:
        raise NotFound(f"No run {parsed}.")
    return run


async def show_run(session: AsyncSession, run_id: str, *, last: int = 10) -> RunDetail:
    """The run's fields and its last ``last`` event lines (deltas folded)."""
    run = await _get_run(session, run_id)
    repo = RunAdminRepository(session)
    events = await repo.last_events(run.id, limit=_SCAN_EVENTS)
    lines = fold_events([(e.seq, e.type, e.created_at, e.data) for e in events])
    return RunDetail(
        run=run_service.run_read(run),
        account_id=run.account_id,
        worker_id=run.worker_id,
        lease_expires_at=run.lease_expires_at,
        event_counts=await repo.event_counts(run.id),
        last_events=lines[-last:] if last > 0 else [],
    )


async def stop_run(session: AsyncSession, runtime: Runtime, run_id: str) -> tuple[AgentRun, bool]:
    """Stop a run of any account (the API's stop path); returns it and whether it changed."""
    run = await _get_run(session, run_id)
    changed = await run_service.stop(session, runtime, run=run)
    return await RunRepository(session).refresh(run), changed


async def suspend_account(
    session: AsyncSession, runtime: Runtime, account_id: str, *, reason: str | None
) -> Suspension:
    """Suspend the account and stop its queued and running runs, in one transaction."""
    account, newly = await account_admin.suspend(session, account_id, reason=reason)
    stopped: list[uuid.UUID] = []
    for run in await RunAdminRepository(session).active_of_account(account.account_id):
        if await run_service.stop(session, runtime, run=run):
            stopped.append(run.id)
    return Suspension(account, newly, stopped)


# -- event summary -------------------------------------------------------------------------------

Event = tuple[int, str, datetime, dict[str, Any]]


def fold_events(events: Sequence[Event]) -> list[EventLine]:
    """One line per event, consecutive deltas of the same message/call folded into one."""
    lines: list[EventLine] = []
    pending: list[Event] = []

    def flush() -> None:
        if pending:
            lines.append(_delta_line(pending))
            pending.clear()

    for event in events:
        seq, kind, created_at, data = event
        if kind in _DELTAS:
            if pending and _delta_key(pending[-1]) != _delta_key(event):
                flush()
            pending.append(event)
            continue
        flush()
        lines.append(EventLine(seq, seq, kind, created_at, summarize(kind, data)))
    flush()
    return lines


def _delta_key(event: Event) -> tuple[str, Any]:
    data = event[3]
    return event[1], data.get("message_id") or data.get("tool_call_id")


def _delta_line(events: Sequence[Event]) -> EventLine:
    first, last = events[0], events[-1]
    text = "".join(str(e[3].get("text", "")) for e in events)
    stream = last[3].get("stream")
    prefix = f"{stream}: " if stream else ""
    return EventLine(first[0], last[0], last[1], last[2], prefix + _clip(text), count=len(events))


def _clip(value: Any, limit: int = SUMMARY_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(kind: str, data: dict[str, Any]) -> str:
    """A one-line, human summary of an event's ``data``."""
    if kind == "run_status":
        error = data.get("error") or {}
        extra = f" — {error.get('code')}: {error.get('message')}" if error else ""
        reason = f" ({data['finish_reason']})" if data.get("finish_reason") else ""
        return f"{data.get('status')}{reason}{extra}"
    if kind == "message":
        message = data.get("message") or {}
        content = message.get("content") or {}
        body = content.get("content") if isinstance(content, dict) else content
        calls = content.get("tool_calls") if isinstance(content, dict) else None
        tail = f" [+{len(calls)} tool call(s)]" if calls else ""
        return f"{message.get('type')}: {_clip(body or '')}{tail}"
    if kind == "tool_call":
        return f"{data.get('name')}({_clip(data.get('arguments', ''), 80)})"
    if kind == "tool_started":
        return str(data.get("name"))
    if kind == "tool_result":
        outcome = "ok" if data.get("success") else "failed"
        output = _clip(data.get("output", ""), 80)
        return f"{data.get('name')} {outcome} in {data.get('duration_ms')} ms: {output}"
    if kind == "usage":
        estimated = " (estimated)" if data.get("estimated") else ""
        return (
            f"{data.get('model')}: {data.get('prompt_tokens')} in / "
            f"{data.get('completion_tokens')} out, ${data.get('cost_usd')}{estimated}"
        )
    if kind == "error":
        return f"{data.get('code')}: {_clip(data.get('message', ''))}"
    return _clip(data)
