"""The run worker: claim, heartbeat, execute, stop, finish — for any number of runs at once.

One ``RunWorker`` per process (inside embedded ``shoal serve`` or a ``shoal worker``). A wake-up
submits the run to the executor; the job claims it (``queued → running`` with a lease), runs
the engine as a child task, and watches it from two sides: the control channel (stop signals,
immediate) and the heartbeat (lease renewal and the stop flag, the guarantee). A lost lease
cancels the engine without writing anything — the run is no longer ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from shoal.billing import service as billing
from shoal.db.engine import saturated
from shoal.db.models import AgentRun
from shoal.db.session import on_commit, on_rollback, unit_of_work
from shoal.engine.types import RunResult
from shoal.errors import NotFound
from shoal.kit.time import utcnow
from shoal.llm.base import ChatModel
from shoal.llm.types import LLMError
from shoal.observability import metrics
from shoal.observability.tracing import Tracer
from shoal.runs import lifecycle
from shoal.runs.events import RunEventLog
from shoal.runs.execute import RunSnapshot, execute_run, prepare
from shoal.runs.repository import Fenced, RunRepository
from shoal.runs.runtime import Completion, Runtime, control_channel
from shoal.runs.service import STOP
from shoal.runs.tracing import RunTrace, TracedChatModel
from shoal.worker.executor import Executor, ExecutorClosed

log = structlog.get_logger(__name__)
CancelReason = Literal["stop", "lost", "shutdown", "billing"]
# (status, error, finish_reason) of an attempt; status "lost" when another party ended it.
_Outcome = tuple[str, dict[str, str] | None, str | None]
CLAIM_ATTEMPTS = 5
# A new run's first heartbeat (lease renewal, stop-flag check) comes within twice this.
FIRST_BEAT_SECONDS = 0.5


def new_worker_id(kind: str) -> str:
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RunWorker:
    def __init__(
        self,
        runtime: Runtime,
        model: ChatModel,
        *,
        worker_id: str,
        tracer: Tracer | None = None,
    ) -> None:
        self.runtime = runtime
        self.model = model
        self.worker_id = worker_id
        self.tracer = tracer
        self.executor = Executor(capacity=runtime.settings.worker_max_runs)
        self._reasons: dict[uuid.UUID, CancelReason] = {}
        self._engines: dict[uuid.UUID, asyncio.Task[RunResult]] = {}
        self._held: dict[uuid.UUID, _Held] = {}
        # Runs woken again while their previous wake-up's job was still deciding: its claim
        # may have failed just before the wake-up's reason (the project's run ending) committed.
        self._rewoken: set[uuid.UUID] = set()
        self._beat: asyncio.Task[None] | None = None

    # -- entry points ----------------------------------------------------------------------
    async def wake(self, run_id: str) -> None:
        """Handle a wake-up: take the run if it can start. Waits for a free slot."""
        parsed = uuid.UUID(run_id)
        if self.executor.running(run_id):  # its job claims once more before it ends
            self._rewoken.add(parsed)
            return
        try:
            await self.executor.submit(run_id, lambda: self._run(parsed))
        except ExecutorClosed:
            log.info("wake_refused_draining", run_id=run_id)

    async def drain(self, grace_seconds: float) -> None:
        """Stop taking runs; after ``grace_seconds`` stop the rest as ``worker_shutdown``."""

        def _shutdown(key: str) -> None:
            self._cancel(uuid.UUID(key), "shutdown")

        await self.executor.drain(grace_seconds, on_timeout=_shutdown)
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(BaseException):
                await self._beat

    def _cancel(self, run_id: uuid.UUID, reason: CancelReason) -> None:
        """Cancel the run's engine — once: a stop arrives by the control channel and by the
        heartbeat, and a second cancel would interrupt the engine's cleanup (storing the
        partial answer and its estimated usage). A request before the engine exists is kept
        and applied by the next call (the heartbeat reads the flag again)."""
        self._reasons.setdefault(run_id, reason)
        task = self._engines.get(run_id)
        if task is not None and not task.done() and task.cancelling() == 0:
            task.cancel(reason)

    # -- one run ---------------------------------------------------------------------------
    async def _claim(self, run_id: uuid.UUID) -> tuple[RunSnapshot, RunEventLog] | None:
        settings = self.runtime.settings
        async with unit_of_work(self.runtime.session_factory) as session:
            if settings.concurrency_overflow == "queue" and await self._account_full(
                session, run_id
            ):
                return None  # stays queued; the account's next terminal write wakes it
            return await self._claim_in(session, run_id)

    async def _claim_in(
        self, session: AsyncSession, run_id: uuid.UUID
    ) -> tuple[RunSnapshot, RunEventLog] | None:
        """Claim in the caller's transaction: one statement takes the run and reserves the seq
        of its ``running`` event, which is written here too."""
        run = await self._take(session, run_id)
        return None if run is None else await self._taken(session, run)

    async def _take(self, session: AsyncSession, run_id: uuid.UUID) -> AgentRun | None:
        return await RunRepository(session).claim(
            run_id,
            worker_id=self.worker_id,
            lease_seconds=self.runtime.settings.run_lease_seconds,
            reserve=1,
        )

    async def _taken(self, session: AsyncSession, run: AgentRun) -> tuple[RunSnapshot, RunEventLog]:
        """The rest of a claim: the agent and history for the first model call (read in this
        transaction), the run's event log, and its ``running`` event (the seq taken for it)."""
        snapshot = RunSnapshot.of(run)
        with contextlib.suppress(NotFound):  # a deleted agent fails the run in execute_run
            # Read in this transaction: no second one before the first model call.
            snapshot = replace(snapshot, prepared=await prepare(session, snapshot))
        metrics.QUEUE_WAIT_SECONDS.observe(max(0.0, (utcnow() - run.created_at).total_seconds()))
        claimed_id = run.id
        events = RunEventLog(
            self.runtime,
            run_id=run.id,
            thread_id=run.thread_id,
            attempt=run.attempt,
            last_seq=run.last_event_seq,
            account_id=run.account_id,
            project_id=run.project_id,
            on_billing_limit=lambda: self._cancel(claimed_id, "billing"),
        )
        await lifecycle.write_events(
            session,
            self.runtime,
            run,
            [("run_status", lifecycle.status_data(run))],
            first_seq=run.last_event_seq,
            allocated=True,
        )
        return snapshot, events

    async def claim_at_start(self, session: AsyncSession, run_id: uuid.UUID) -> Completion | None:
        """Embedded start: claim the new run in the start's own transaction when a slot is
        free, skipping the wake-up → claim round trip. The claim is the usual fenced, leased
        one (the sweeper fails it if this process dies); the job starts once the start
        commits, and a rollback gives the slot back. None: leave it queued and wake it.

        The caller takes the run first, before its transaction locks anything a worker's
        transaction holds while waiting (the thread's row: a claim may wait for the project's
        running run's transaction, which may be storing a message of this thread), then
        writes the run's first events and awaits the returned completion."""
        if self.runtime.settings.concurrency_overflow == "queue":
            return None  # the account's running cap is checked on the wake-up path
        if not await self.executor.reserve():
            return None
        try:
            run = await self._take(session, run_id)
        except BaseException:
            self.executor.release()
            raise
        if run is None:
            self.executor.release()
            return None
        on_rollback(session, self.executor.release)

        async def complete() -> None:
            claimed = await self._taken(session, run)

            async def _go() -> None:
                self.executor.start_reserved(str(run_id), lambda: self._run_claimed(*claimed))

            on_commit(session, _go)

        return complete

    async def _account_full(self, session: AsyncSession, run_id: uuid.UUID) -> bool:
        """With ``SHOAL_CONCURRENCY_OVERFLOW=queue``: is the run's account at its cap of running
        runs? (A soft check: two workers may both pass it at the same instant.)"""
        repo = RunRepository(session)
        run = await repo.get(run_id)
        if run is None or run.status != "queued":
            return False
        settings = self.runtime.settings
        cap = await billing.concurrency_cap(session, run.account_id, settings=settings)
        limit = cap if cap is not None else settings.max_active_runs_per_account
        return await repo.count_running_for_account(run.account_id) >= limit

    async def _claim_patiently(self, run_id: uuid.UUID) -> tuple[RunSnapshot, RunEventLog] | None:
        """The claim, retried while the database is saturated (a burst of starts on SQLite):
        giving up leaves the run queued until the sweeper wakes it again, much later."""
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                return await self._claim(run_id)
            except Exception as exc:
                if not saturated(exc) or attempt == CLAIM_ATTEMPTS - 1:
                    raise
                log.warning("claim_deferred_database_busy", run_id=str(run_id))
                await asyncio.sleep(min(5.0, 0.5 * 2**attempt))
        return None

    async def _run(self, run_id: uuid.UUID) -> None:
        try:
            while True:
                self._rewoken.discard(run_id)
                claimed = await self._claim_patiently(run_id)
                if claimed is not None:
                    await self._run_claimed(*claimed)
                    return
                if run_id not in self._rewoken:
                    return  # (no await between this check and the executor freeing the key)
        finally:
            self._rewoken.discard(run_id)

    async def _run_claimed(self, run: RunSnapshot, events: RunEventLog) -> None:
        # The run's own log context (not that of the request whose wake-up started it).
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            run_id=str(run.id),
            thread_id=str(run.thread_id),
            account_id=str(run.account_id),
            attempt=run.attempt,
        )
        metrics.ACTIVE_RUNS.inc()
        events.observers.append(_FirstToken())
        trace = RunTrace(self.tracer, run) if self.tracer is not None else None
        outcome: _Outcome = ("lost", None, None)
        try:
            if trace is not None:
                events.observers.append(trace.on_event)
            outcome = await self._execute(run, events, trace)
        finally:
            metrics.ACTIVE_RUNS.dec()
            if trace is not None:
                status, error, finish_reason = outcome
                trace.finish(status=status, error=error, finish_reason=finish_reason)

    def _start_engine(
        self, run_id: uuid.UUID, work: Coroutine[Any, Any, RunResult]
    ) -> asyncio.Task[RunResult]:
        engine = asyncio.create_task(work)
        self._engines[run_id] = engine
        if run_id in self._reasons:  # stopped while it was being set up
            self._cancel(run_id, self._reasons[run_id])
        return engine

    async def _execute(
        self, run: RunSnapshot, events: RunEventLog, trace: RunTrace | None
    ) -> _Outcome:
        """Run the engine under watch, then write the terminal status; the outcome (status
        ``lost`` when the run is no longer ours) is returned for the trace."""
        model = self.model if trace is None else TracedChatModel(self.model, trace)
        engine = self._start_engine(run.id, execute_run(self.runtime, model, run, events))
        watchers = [asyncio.create_task(self._listen_for_stop(run))]
        self._hold(run)
        status, error, finish_reason = "completed", None, None
        try:
            result = await engine
            finish_reason = result.finish_reason
        except asyncio.CancelledError:
            reason = self._reasons.get(run.id)
            if reason is None:  # this job itself was cancelled (process shutting down)
                reason = "shutdown"
                engine.cancel()
                with contextlib.suppress(BaseException):
                    await engine
            if reason == "lost":
                log.warning("run_lease_lost")
                return "lost", None, None
            status = "stopped" if reason == "stop" else "failed"
            if reason == "billing":
                error = {
                    "code": "billing_limit",
                    "message": "The account's spend limit for this billing period was reached.",
                }
            if reason == "shutdown":
                error = {
                    "code": "worker_shutdown",
                    "message": "The worker shut down during this run.",
                }
        except LLMError as exc:
            status, error = "failed", {"code": "llm_error", "message": str(exc)}
            metrics.LLM_ERRORS_TOTAL.labels(metrics.provider_of(run.model_name)).inc()
        except Fenced:
            log.warning("run_lease_lost")
            return "lost", None, None
        except Exception as exc:
            log.exception("run_crashed")
            status, error = (
                "failed",
                {"code": "internal", "message": f"Internal error: {type(exc).__name__}"},
            )
        finally:
            for watcher in watchers:
                watcher.cancel()
            for watcher in watchers:
                with contextlib.suppress(BaseException):
                    await watcher
            self._engines.pop(run.id, None)
            self._held.pop(run.id, None)
            self._reasons.pop(run.id, None)
            await events.close()
        finish_reason = finish_reason if status == "completed" else None
        if not await self._finish(
            run, events, status=status, error=error, finish_reason=finish_reason
        ):
            return "lost", None, None
        return status, error, finish_reason

    async def _finish(
        self,
        run: RunSnapshot,
        events: RunEventLog,
        *,
        status: str,
        error: dict[str, str] | None,
        finish_reason: str | None,
    ) -> bool:
        try:
            async with events._lock, unit_of_work(self.runtime.session_factory) as session:
                await events.write_pending(session)  # fences this transaction
                row = await RunRepository(session).get(run.id)
                assert row is not None
                await lifecycle.finish(
                    session,
                    self.runtime,
                    row,
                    status=status,
                    error=error,
                    finish_reason=finish_reason,
                    first_seq=events.take_seq(),
                )
        except Fenced:
            log.warning("run_lease_lost_at_finish")  # someone else ended it: not ours to report
            return False
        log.info("run_finished", status=status, error=error and error["code"])
        return True

    async def _listen_for_stop(self, run: RunSnapshot) -> None:
        async for message in self.runtime.bus.listen(control_channel(run.id)):
            if message == STOP:
                self._cancel(run.id, "stop")

    async def _heartbeat(self) -> None:
        """One heartbeat for all of this process's runs: a single fenced statement per tick
        renews every lease and reads every stop flag (not one transaction per run per
        interval). A run joins at the tick after its first ``FIRST_BEAT_SECONDS`` (a stop
        whose signal raced the run's start is still seen within 2 s; a short run never
        costs a heartbeat); after that every ``SHOAL_RUN_HEARTBEAT_SECONDS``."""
        settings = self.runtime.settings
        tick = min(FIRST_BEAT_SECONDS, settings.run_heartbeat_seconds)
        while True:
            await asyncio.sleep(tick)
            now = asyncio.get_running_loop().time()
            due = {
                run_id: held
                for run_id, held in self._held.items()
                if now - held.beaten >= (settings.run_heartbeat_seconds if held.beats else tick)
            }
            if not due:
                continue
            try:
                async with unit_of_work(self.runtime.session_factory) as session:
                    alive = await RunRepository(session).fence_many(
                        [(run_id, held.attempt) for run_id, held in due.items()],
                        lease_seconds=settings.run_lease_seconds,
                    )
            except Exception:
                log.exception("heartbeat_failed")
                continue
            for run_id, held in due.items():
                if self._held.get(run_id) is not held:
                    continue  # finished meanwhile
                held.beaten, held.beats = now, held.beats + 1
                if run_id not in alive:
                    self._cancel(run_id, "lost")
                elif alive[run_id] is not None:
                    self._cancel(run_id, "stop")

    def _hold(self, run: RunSnapshot) -> None:
        self._held[run.id] = _Held(run.attempt, asyncio.get_running_loop().time())
        if self._beat is None or self._beat.done():
            self._beat = asyncio.create_task(self._heartbeat(), name="run-heartbeat")


@dataclass(slots=True)
class _Held:
    """A run this process executes: its attempt and when its lease was last renewed."""

    attempt: int
    beaten: float
    beats: int = 0


class _FirstToken:
    """``shoal_time_to_first_token_seconds``: from the claim (the worker starting the run) to
    the run's first streamed assistant text. Queue wait is measured separately."""

    def __init__(self) -> None:
        self.started = asyncio.get_running_loop().time()
        self.seen = False

    def __call__(self, type: str, _data: dict[str, Any]) -> None:
        if type == "text_delta" and not self.seen:
            self.seen = True
            elapsed = asyncio.get_running_loop().time() - self.started
            metrics.TIME_TO_FIRST_TOKEN_SECONDS.observe(elapsed)
