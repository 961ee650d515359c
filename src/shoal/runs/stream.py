"""Resumable event streams: attach live, replay storage after the cursor, merge by ``seq``.

Every event is delivered exactly once and in order, whether the run is live or finished. The
live side may lose events (a bus outage); a gap in ``seq`` is filled from the database, and a
quiet live side is checked against the database at every ping so a terminal event that never
reached the bus still ends the stream.

Deleting a thread (or its project) ends its streams: the delete signals :data:`DELETED` on the
thread's channel after it commits (at once, in every process), and a quiet stream checks at
every ping that its run or thread still exists (in case that signal was lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from shoal.db.engine import read_factory
from shoal.db.models import AgentRun
from shoal.kit.streams import thread_event_id
from shoal.observability.metrics import SSE_SUBSCRIBERS
from shoal.runs.lifecycle import TERMINAL
from shoal.runs.repository import RunRepository, event_dict
from shoal.runs.runtime import Runtime, run_stream, thread_channel
from shoal.threads.repository import ThreadRepository

PAGE = 500
GAP_POLL_SECONDS = 0.05
DELETED = "deleted"  # on a thread's channel: the thread is gone, its streams end
T = TypeVar("T")


def is_terminal(event: dict[str, Any]) -> bool:
    return event.get("type") == "run_status" and event.get("data", {}).get("status") in TERMINAL


class Closer:
    """Ends the run streams it watches: :meth:`close` wakes each one's live queue with
    ``None`` (their thread was deleted)."""

    def __init__(self) -> None:
        self.closed = False
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def close(self) -> None:
        self.closed = True
        for queue in self._queues:
            queue.put_nowait(None)

    def watch(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._queues.add(queue)
        if self.closed:
            queue.put_nowait(None)

    def unwatch(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._queues.discard(queue)


@dataclass
class _Live:
    queue: asyncio.Queue[dict[str, Any] | None]
    task: asyncio.Task[None]


async def _attach(runtime: Runtime, run_id: uuid.UUID, after: int) -> _Live:
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    subscription = runtime.bus.subscribe(run_stream(run_id), after=after)

    async def pump() -> None:
        async for event in subscription:
            queue.put_nowait(event)

    task = asyncio.create_task(pump(), name=f"live:{run_id}")
    await asyncio.sleep(0)
    return _Live(queue, task)


async def _uncancellable(coro: Coroutine[Any, Any, T]) -> T:
    """Run a database read to its end even if the subscriber hangs up meanwhile.

    A disconnect cancels the stream (anyio re-delivers the cancellation at every await), and
    a session cancelled mid-query never gives its connection back: the pool runs dry, and on
    SQLite (``BEGIN IMMEDIATE``) the leaked transaction holds the database lock, so every
    other request waits out ``busy_timeout`` and fails."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "unretrieved"
    return await asyncio.shield(task)


async def _stored(
    runtime: Runtime, run: AgentRun, after: int, until: int | None = None
) -> tuple[list[dict[str, Any]], AgentRun | None]:
    return await _uncancellable(_read_stored(runtime, run, after, until))


async def _read_stored(
    runtime: Runtime, run: AgentRun, after: int, until: int | None
) -> tuple[list[dict[str, Any]], AgentRun | None]:
    async with read_factory(runtime.session_factory)() as session:
        repo = RunRepository(session)
        rows = await repo.events_after(run.id, after, limit=PAGE, until=until)
        fresh = await repo.get(run.id)
        events = [event_dict(None, r, run_id=run.id, thread_id=run.thread_id) for r in rows]
        return events, fresh


class _RunCursor:
    """Delivers a run's events after ``last`` exactly once, in order, from storage or live."""

    def __init__(self, runtime: Runtime, run: AgentRun, last: int) -> None:
        self.runtime = runtime
        self.run = run
        self.last = last
        self.done = False

    async def from_storage(self, until: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Stored events after the cursor (up to ``until``); marks ``done`` at the end of a
        finished run even if its terminal event never reached the bus."""
        while not self.done:
            events, fresh = await _stored(self.runtime, self.run, self.last, until)
            for event in events:
                yield self._advance(event)
            if fresh is None or (fresh.status in TERMINAL and fresh.last_event_seq <= self.last):
                self.done = True
            if len(events) < PAGE:
                return

    async def fill_gap(self, until: int) -> AsyncIterator[dict[str, Any]]:
        """Stored events up to ``until``, waiting for them when the bus ran ahead of storage
        (the writer flushes in batches; after a Redis restart the live buffer no longer holds
        that unflushed tail). Skipping instead would lose events for good. The wait is bounded:
        within a lease (plus a sweep) the writer has stored them or the sweeper ended the run."""
        settings = self.runtime.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.run_lease_seconds + settings.sweeper_interval_seconds + 1
        while True:
            async for event in self.from_storage(until=until):
                yield event
            if self.done or self.last >= until or loop.time() > deadline:
                return
            await asyncio.sleep(GAP_POLL_SECONDS)

    def _advance(self, event: dict[str, Any]) -> dict[str, Any]:
        self.last = event["seq"]
        self.done = is_terminal(event)
        return event


async def _live_covers(runtime: Runtime, run_id: uuid.UUID, after: int) -> bool:
    """Whether the live subscription alone delivers every event after ``after``: the
    in-process bus (no Redis: looking costs nothing) still buffers the run from ``after + 1``.
    Then the storage replay is skipped — a fresh run's stream starts without a database read;
    a later gap is still filled from storage."""
    if runtime.settings.redis_url is not None:
        return False
    buffered = await runtime.bus.buffered(run_stream(run_id), after=after)
    return bool(buffered) and int(buffered[0]["seq"]) == after + 1


async def _watch_thread(
    runtime: Runtime, thread_id: uuid.UUID, closer: Closer, runs: asyncio.Queue[str] | None = None
) -> None:
    """Close ``closer`` when the thread is deleted; pass other messages (new runs) on."""
    listener = runtime.bus.listen(thread_channel(thread_id))
    try:
        async for message in listener:
            if message == DELETED:
                closer.close()
            if runs is not None:
                runs.put_nowait(message)
            if closer.closed:
                return
    finally:
        close = getattr(listener, "aclose", None)  # every bus's listener has it (bus.py)
        if close is not None:
            await close()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def run_events(
    runtime: Runtime, run: AgentRun, *, after: int, idle_check_seconds: float
) -> AsyncIterator[dict[str, Any]]:
    """Events of ``run`` with ``seq > after``, ending with its terminal ``run_status`` (or
    when the run is deleted with its thread). One subscriber of ``shoal_sse_subscribers``
    while it is being read."""
    SSE_SUBSCRIBERS.inc()
    closer = Closer()
    watcher = asyncio.create_task(_watch_thread(runtime, run.thread_id, closer))
    try:
        async for event in _run_events(
            runtime, run, after=after, idle_check_seconds=idle_check_seconds, closer=closer
        ):
            yield event
    finally:
        await _cancel(watcher)
        SSE_SUBSCRIBERS.dec()


async def _run_events(
    runtime: Runtime,
    run: AgentRun,
    *,
    after: int,
    idle_check_seconds: float,
    closer: Closer,
) -> AsyncIterator[dict[str, Any]]:
    live = await _attach(runtime, run.id, after)
    closer.watch(live.queue)
    cursor = _RunCursor(runtime, run, after)
    try:
        if not await _live_covers(runtime, run.id, after):
            async for event in cursor.from_storage():
                yield event
        while not cursor.done:
            try:
                # In a burst the next event is already queued: take it without the timer and
                # the task a timed wait costs (per event and subscriber, that is most of the
                # CPU of a big fan-out).
                live_event = (
                    live.queue.get_nowait()
                    if not live.queue.empty()
                    else await asyncio.wait_for(live.queue.get(), idle_check_seconds)
                )
            except TimeoutError:
                # Quiet: storage may hold what the bus lost (or the run ended without a word,
                # or is gone with its thread).
                async for stored in cursor.from_storage():
                    yield stored
                continue
            if live_event is None:  # the thread was deleted
                return
            event = live_event
            if event["seq"] <= cursor.last:
                continue
            if event["seq"] > cursor.last + 1:  # a gap: fill it from storage first
                async for stored in cursor.fill_gap(event["seq"] - 1):
                    yield stored
                if cursor.done or event["seq"] <= cursor.last:
                    continue
            yield cursor._advance(event)
    finally:
        closer.unwatch(live.queue)
        await _cancel(live.task)


# -- thread stream -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Where a thread stream starts: runs already delivered, and the seq to continue after
    for others (default 0)."""

    done: frozenset[uuid.UUID]
    after: dict[uuid.UUID, int]


# A thread-stream cursor ``(run_id, seq)``, a resolved :class:`Start`, or None (from the start).
Position = tuple[uuid.UUID, int] | Start | None


async def _runs_of_thread(runtime: Runtime, thread_id: uuid.UUID) -> list[AgentRun] | None:
    """The thread's runs, oldest first; None when the thread no longer exists."""
    async with read_factory(runtime.session_factory)() as session:
        if not await ThreadRepository(session).exists(thread_id):
            return None
        return list(await RunRepository(session).runs_of_thread(thread_id))


async def _live_tail(runtime: Runtime, run: AgentRun) -> int:
    """The seq of ``run``'s newest event, published live but perhaps not stored yet (the
    writer flushes in batches): ``?after=now`` starts after it, not at ``last_event_seq``."""
    buffered = await runtime.bus.buffered(run_stream(run.id), after=run.last_event_seq)
    return max([run.last_event_seq, *(int(e["seq"]) for e in buffered)])


async def live_start(runtime: Runtime, runs: Sequence[AgentRun]) -> Start:
    """``?after=now``: finished runs are done, active ones continue after their live tail.
    Resolved before the stream's response starts, so a run started after that is new."""
    done = frozenset(r.id for r in runs if r.status in TERMINAL)
    return Start(done, {r.id: await _live_tail(runtime, r) for r in runs if r.id not in done})


def _start(runs: list[AgentRun], position: tuple[uuid.UUID, int] | Start) -> Start:
    """A cursor's run continues after its seq and every run before it is done (a cursor of
    a run that is gone starts from the beginning)."""
    if isinstance(position, Start):
        return position
    ids = [r.id for r in runs]
    if position[0] not in ids:
        return Start(frozenset(), {})
    return Start(frozenset(ids[: ids.index(position[0])]), {position[0]: position[1]})


async def thread_events(
    runtime: Runtime,
    thread_id: uuid.UUID,
    *,
    position: Position,
    idle_check_seconds: float,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Events of every run of the thread in order, then of new runs as they start; ends when
    the thread is deleted. One subscriber of ``shoal_sse_subscribers`` while it is being read.
    ``position``: a thread-stream cursor ``(run_id, seq)``, a :func:`live_start` (``now``) or
    None (from the thread's first run)."""
    SSE_SUBSCRIBERS.inc()
    try:
        async for item in _thread_events(
            runtime, thread_id, position=position, idle_check_seconds=idle_check_seconds
        ):
            yield item
    finally:
        SSE_SUBSCRIBERS.dec()


async def _thread_events(
    runtime: Runtime,
    thread_id: uuid.UUID,
    *,
    position: Position,
    idle_check_seconds: float,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    notified: asyncio.Queue[str] = asyncio.Queue()
    closer = Closer()
    watcher = asyncio.create_task(_watch_thread(runtime, thread_id, closer, notified))
    await asyncio.sleep(0)
    done: set[uuid.UUID] = set()
    start_after: dict[uuid.UUID, int] = {}
    try:
        while not closer.closed:
            runs = await _uncancellable(_runs_of_thread(runtime, thread_id))
            if runs is None:  # deleted (and the signal lost, or not yet here)
                return
            if position is not None:
                start = _start(runs, position)
                done, start_after, position = set(start.done), dict(start.after), None
            pending = [r for r in runs if r.id not in done]
            for run in pending:
                async for event in _run_events(
                    runtime,
                    run,
                    after=start_after.pop(run.id, 0),
                    idle_check_seconds=idle_check_seconds,
                    closer=closer,
                ):
                    yield thread_event_id(run.id, event["seq"]), event
                if closer.closed:
                    return
                done.add(run.id)
            if pending:
                continue  # runs may have started meanwhile
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(notified.get(), idle_check_seconds)
    finally:
        await _cancel(watcher)
