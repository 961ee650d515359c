"""Resumable event streams: attach live, replay storage after the cursor, merge by ``seq``.

Every event is delivered exactly once and in order, whether the run is live or finished. The
live side may lose events (a bus outage); a gap in ``seq`` is filled from the database, and a
quiet live side is checked against the database at every ping so a terminal event that never
reached the bus still ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from shoal.db.engine import read_factory
from shoal.db.models import AgentRun
from shoal.kit.streams import thread_event_id
from shoal.observability.metrics import SSE_SUBSCRIBERS
from shoal.runs.lifecycle import TERMINAL
from shoal.runs.repository import RunRepository, event_dict
from shoal.runs.runtime import Runtime, run_stream, thread_channel

PAGE = 500
GAP_POLL_SECONDS = 0.05
T = TypeVar("T")


def is_terminal(event: dict[str, Any]) -> bool:
    return event.get("type") == "run_status" and event.get("data", {}).get("status") in TERMINAL


@dataclass
class _Live:
    queue: asyncio.Queue[dict[str, Any]]
    task: asyncio.Task[None]


async def _attach(runtime: Runtime, run_id: uuid.UUID, after: int) -> _Live:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
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


async def run_events(
    runtime: Runtime, run: AgentRun, *, after: int, idle_check_seconds: float
) -> AsyncIterator[dict[str, Any]]:
    """Events of ``run`` with ``seq > after``, ending with its terminal ``run_status``.
    One subscriber of ``shoal_sse_subscribers`` while it is being read."""
    SSE_SUBSCRIBERS.inc()
    try:
        async for event in _run_events(
            runtime, run, after=after, idle_check_seconds=idle_check_seconds
        ):
            yield event
    finally:
        SSE_SUBSCRIBERS.dec()


async def _run_events(
    runtime: Runtime, run: AgentRun, *, after: int, idle_check_seconds: float
) -> AsyncIterator[dict[str, Any]]:
    live = await _attach(runtime, run.id, after)
    cursor = _RunCursor(runtime, run, after)
    try:
        if not await _live_covers(runtime, run.id, after):
            async for event in cursor.from_storage():
                yield event
        while not cursor.done:
            try:
                event = await asyncio.wait_for(live.queue.get(), idle_check_seconds)
            except TimeoutError:
                # Quiet: storage may hold what the bus lost (or the run ended without a word).
                async for stored in cursor.from_storage():
                    yield stored
                continue
            if event["seq"] <= cursor.last:
                continue
            if event["seq"] > cursor.last + 1:  # a gap: fill it from storage first
                async for stored in cursor.fill_gap(event["seq"] - 1):
                    yield stored
                if cursor.done or event["seq"] <= cursor.last:
                    continue
            yield cursor._advance(event)
    finally:
        live.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await live.task


# -- thread stream -------------------------------------------------------------------------------


async def _runs_of_thread(runtime: Runtime, thread_id: uuid.UUID) -> list[AgentRun]:
    async with read_factory(runtime.session_factory)() as session:
        return list(await RunRepository(session).runs_of_thread(thread_id))


async def thread_events(
    runtime: Runtime,
    thread_id: uuid.UUID,
    *,
    position: tuple[uuid.UUID, int] | None,
    idle_check_seconds: float,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Events of every run of the thread in order, then of new runs as they start.
    One subscriber of ``shoal_sse_subscribers`` while it is being read."""
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
    position: tuple[uuid.UUID, int] | None,
    idle_check_seconds: float,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    listener = runtime.bus.listen(thread_channel(thread_id))
    notified: asyncio.Queue[str] = asyncio.Queue()

    async def pump() -> None:
        async for message in listener:
            notified.put_nowait(message)

    pump_task = asyncio.create_task(pump())
    await asyncio.sleep(0)
    done: set[uuid.UUID] = set()
    try:
        while True:
            runs = await _uncancellable(_runs_of_thread(runtime, thread_id))
            if position is not None:
                ids = [r.id for r in runs]
                if position[0] in ids:
                    index = ids.index(position[0])
                    done.update(ids[:index])
                    start_after = {position[0]: position[1]}
                else:
                    start_after = {}
                position = None
            else:
                start_after = {}
            pending = [r for r in runs if r.id not in done]
            for run in pending:
                async for event in _run_events(
                    runtime,
                    run,
                    after=start_after.get(run.id, 0),
                    idle_check_seconds=idle_check_seconds,
                ):
                    yield thread_event_id(run.id, event["seq"]), event
                done.add(run.id)
            if pending:
                continue  # runs may have started meanwhile
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(notified.get(), idle_check_seconds)
    finally:
        pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump_task
