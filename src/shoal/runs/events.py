"""The engine's ports over the database, for one claimed attempt of a run.

:class:`RunEventLog` is the EventSink: it numbers events (``seq`` continues from the run row
read at claim time), publishes each one live at once, and stores them in batches — at least
every ``SHOAL_EVENT_FLUSH_MS`` and at every message boundary — in transactions fenced by the
run's attempt. :class:`RunMessageStore` is the MessageStore: message writes are fenced too, and
store the events emitted before them and the message's own ``message`` event in the same
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from shoal.billing import service as billing
from shoal.db.engine import read_factory
from shoal.db.models import Message
from shoal.db.session import on_commit, on_rollback, unit_of_work
from shoal.kit.ids import parse_id
from shoal.kit.time import utcnow
from shoal.runs.repository import Fenced, NewEvent, RunRepository, event_dict
from shoal.runs.runtime import Runtime, run_stream
from shoal.threads.repository import MessageRepository
from shoal.threads.schemas import MessageRead

log = structlog.get_logger(__name__)
# A synchronous look at every event as it is emitted (tracing, metrics). It must not block:
# it runs inside the engine's emit.
EventObserver = Callable[[str, dict[str, Any]], None]
# Events after which everything so far is stored before the engine goes on.
# ``usage`` is not one, yet every LLM call is metered in the ledger and checked against the
# plan's limit before the engine goes on: the engine stores the call's assistant message right
# after its usage (one transaction for both, not two), and the worker's final write stores
# whatever is still pending; a lone usage event waits at most ``SHOAL_EVENT_FLUSH_MS``.
BOUNDARIES = frozenset({"message", "run_status", "tool_result"})


def message_dict(message: Message) -> dict[str, Any]:
    return MessageRead.model_validate(message).model_dump(mode="json")


class RunEventLog:
    def __init__(
        self,
        runtime: Runtime,
        *,
        run_id: uuid.UUID,
        thread_id: uuid.UUID,
        attempt: int,
        last_seq: int,
        account_id: uuid.UUID | None = None,
        project_id: uuid.UUID | None = None,
        on_billing_limit: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.thread_id = thread_id
        self.attempt = attempt
        self.account_id = account_id
        self.project_id = project_id
        self.on_billing_limit = on_billing_limit
        self.next_seq = last_seq + 1
        self._pending: list[NewEvent] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self.fenced = False
        self._usage = [0, 0, 0]  # prompt tokens, completion tokens, micro-USD not yet stored
        self.observers: list[EventObserver] = []

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        event = NewEvent(self.next_seq, type, data, utcnow())
        self.next_seq += 1
        self.observe(type, data)
        self._pending.append(event)
        if type == "usage":
            self._usage[0] += int(data.get("prompt_tokens") or 0)
            self._usage[1] += int(data.get("completion_tokens") or 0)
            self._usage[2] += round(float(data.get("cost_usd") or 0) * 1_000_000)
        await self.runtime.bus.publish(
            run_stream(self.run_id),
            event_dict(None, event, run_id=self.run_id, thread_id=self.thread_id),
        )
        if type in BOUNDARIES:
            await self.flush()
        elif self._timer is None:
            delay = self.runtime.settings.event_flush_ms / 1000
            self._timer = asyncio.get_running_loop().call_later(delay, self._flush_soon)

    def observe(self, type: str, data: dict[str, Any]) -> None:
        for observe in self.observers:
            try:
                observe(type, data)
            except Exception:  # an observer's bug never costs the run
                log.warning("event_observer_failed", exc_info=True)

    def _flush_soon(self) -> None:
        self._timer = None
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except Fenced:
            self.fenced = True
        except Exception:
            log.exception("event_flush_failed", run_id=str(self.run_id))

    async def flush(self) -> None:
        """Store what is pending, in a transaction fenced by this attempt."""
        async with self._lock:
            if not self._pending:
                return
            async with unit_of_work(self.runtime.session_factory) as session:
                await self.write_pending(session)

    async def write_pending(
        self, session: AsyncSession, *, fenced: bool = True, through: int = 0
    ) -> None:
        """Store pending events inside the caller's transaction (fencing it first; the fence
        also moves the row's ``last_event_seq`` to the batch's last seq, or to ``through``
        when the transaction goes on to store a seq the caller reserved)."""
        repo = RunRepository(session)
        batch, self._pending = self._pending, []
        usage, self._usage = self._usage, [0, 0, 0]

        def keep() -> None:  # the transaction did not commit: these are still to be stored
            self._pending = batch + self._pending
            self._usage = [a + b for a, b in zip(usage, self._usage, strict=True)]

        # Also when a later statement of the caller's transaction (its message) or the commit
        # fails: the batch's seqs are taken, so losing it would leave a gap.
        on_rollback(session, keep)
        if fenced:
            await repo.fence(
                self.run_id,
                self.attempt,
                lease_seconds=self.runtime.settings.run_lease_seconds,
                last_seq=max(batch[-1].seq if batch else 0, through),
            )
        await repo.insert_events(self.run_id, batch, bump=not fenced)
        if any(usage):
            await repo.add_usage(
                self.run_id,
                prompt_tokens=usage[0],
                completion_tokens=usage[1],
                cost_micro_usd=usage[2],
            )
        await self._meter(session, [e for e in batch if e.type == "usage"])

    async def _meter(self, session: AsyncSession, usage: list[NewEvent]) -> None:
        """One ledger row per LLM call (idempotent by event), then the plan's limit."""
        if not usage or self.account_id is None or self.project_id is None:
            return
        for event in usage:
            await billing.record_llm_usage(
                session,
                account_id=self.account_id,
                project_id=self.project_id,
                thread_id=self.thread_id,
                run_id=self.run_id,
                attempt=self.attempt,
                model=str(event.data.get("model") or ""),
                prompt_tokens=int(event.data.get("prompt_tokens") or 0),
                completion_tokens=int(event.data.get("completion_tokens") or 0),
                cost_usd=float(event.data.get("cost_usd") or 0.0),
                estimated=bool(event.data.get("estimated")),
                key=f"{self.run_id}:{event.seq}",
            )
        over = await billing.over_limit(session, self.account_id, settings=self.runtime.settings)
        if over and self.on_billing_limit is not None:
            stop = self.on_billing_limit

            async def stop_after_commit() -> None:
                stop()

            # Once this transaction (the usage and the message that came with it) is durable:
            # cancelling the engine inside it would roll the output back.
            on_commit(session, stop_after_commit)

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def give_back(self, seq: int) -> None:
        """Return a seq from :meth:`take_seq` whose event was never stored, so the run's seqs
        stay gapless (possible while nothing was numbered after it)."""
        if self.next_seq == seq + 1:
            self.next_seq = seq
        else:
            log.warning("event_seq_skipped", run_id=str(self.run_id), seq=seq)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._flush_task


class RunMessageStore:
    """MessageStore over the messages table, fenced by the run's attempt.

    It announces each message itself: the row and its ``message`` event commit in one
    transaction, so a reader never sees one without the other (the messages list's
    ``stream_cursor`` is exactly where its history ends)."""

    announces_messages = True

    def __init__(
        self,
        runtime: Runtime,
        events: RunEventLog,
        *,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.events = events
        self._history = history  # read at the start of the run; answers the first listing

    async def list_llm_messages(self, thread_id: str) -> list[dict[str, Any]]:
        history, self._history = self._history, None
        if history is not None and thread_id == str(self.events.thread_id):
            return history
        async with read_factory(self.runtime.session_factory)() as session:
            rows = await MessageRepository(session).llm_messages(uuid.UUID(thread_id))
            return [message_dict(m) for m in rows]

    async def add_message(
        self,
        thread_id: str,
        *,
        type: str,
        content: dict[str, Any],
        is_llm_message: bool = True,
        metadata: dict[str, Any] | None = None,
        message_id: str | None = None,
        agent_run_id: str | None = None,
    ) -> dict[str, Any]:
        self._history = None  # the prefetched history no longer holds every message
        events = self.events
        committed = False

        async def mark_committed() -> None:
            nonlocal committed
            committed = True

        async with events._lock:
            seq = events.take_seq()  # the `message` event's, numbered before anything after it
            try:
                async with unit_of_work(self.runtime.session_factory) as session:
                    on_commit(session, mark_committed)
                    await events.write_pending(session, through=seq)  # fences the transaction
                    message = await MessageRepository(session).add(
                        uuid.UUID(thread_id),
                        type=type,
                        content=content,
                        is_llm_message=is_llm_message,
                        metadata=metadata,
                        agent_run_id=events.run_id,
                        message_id=parse_id(message_id) if message_id else None,
                    )
                    stored = message_dict(message)
                    event = NewEvent(seq, "message", {"message": stored}, utcnow())
                    await RunRepository(session).insert_events(events.run_id, [event], bump=False)
                    wire = event_dict(None, event, run_id=events.run_id, thread_id=events.thread_id)
                    self.runtime.after_commit_publish(session, events.run_id, [wire])
            except BaseException:
                if not committed:
                    events.give_back(seq)
                raise
        events.observe("message", {"message": stored})
        return stored

    async def get_message(self, thread_id: str, message_id: str) -> dict[str, Any] | None:
        parsed = parse_id(message_id)
        thread = parse_id(thread_id)
        if parsed is None or thread is None:
            return None
        async with read_factory(self.runtime.session_factory)() as session:
            message = await MessageRepository(session).get(thread, parsed)
            return None if message is None else message_dict(message)
