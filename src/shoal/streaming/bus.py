"""The EventBus port: live fan-out of run events, control signals and worker liveness.

Durable storage of events is not the bus's job (runs/repository.py writes event rows); the bus
carries what is live. Its per-stream buffer keeps at least the not-yet-flushed tail of a run's
events, so a subscriber that attaches live first and then replays storage can merge by ``seq``
without a gap. Implementations: :class:`~shoal.streaming.memory.MemoryBus` (embedded, one
process) and :class:`~shoal.streaming.redis.RedisBus` (Redis Streams + pub/sub, many processes);
:func:`~shoal.streaming.factory.create_bus` picks one from the settings.

Invariants both implementations keep:

* Within a stream ``seq`` is a positive int that only grows. A publish whose ``seq`` is not above
  the stream's last one is dropped (a duplicate or a late writer), so publish each stream's
  events in ``seq`` order (await them one by one).
* Events travel as JSON: what subscribers receive is the JSON round trip of what was published
  (datetimes become ISO 8601 strings, UUIDs strings). One decoded dict may be shared by every
  local subscriber: treat it as read-only.
* ``subscribe``/``listen`` attach when called, not at the first ``anext``; their iterators also
  have ``aclose()`` (use ``contextlib.aclosing``), and end when the bus is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

Event = dict[str, Any]


class EventBus(Protocol):
    async def publish(self, stream: str, event: Mapping[str, Any]) -> None:
        """Append ``event`` (a JSON-able mapping with an int ``seq``) to ``stream``'s live buffer
        and wake its subscribers. Never raises for a transient outage: it logs and drops (the
        event log in the database is the source of truth)."""
        ...

    def subscribe(self, stream: str, *, after: int = 0) -> AsyncIterator[Event]:
        """Buffered events with ``seq > after`` then live ones, in publish order, each at most
        once (every yielded ``seq`` is above the previous). The iterator only ends when the
        caller closes it or the bus closes. After a bus outage, or when the consumer falls
        further behind than the buffer (or its inbox) holds, it resumes and may skip
        events: callers detect gaps by ``seq`` and fill them from storage."""
        ...

    async def buffered(self, stream: str, *, after: int = 0) -> list[Event]:
        """What the live buffer still holds with ``seq > after`` (e.g. an unflushed tail);
        ``[]`` when the bus is unreachable."""
        ...

    async def expire(self, stream: str, *, ttl_seconds: float) -> None:
        """Let ``stream``'s buffer go after ``ttl_seconds`` (its events are durable by then).
        A later call replaces the deadline; a later publish does not cancel it."""
        ...

    async def signal(self, channel: str, message: str) -> None:
        """Fire-and-forget notification to every current listener of ``channel`` (at most once)."""
        ...

    def listen(self, channel: str) -> AsyncIterator[str]:
        """Messages signalled on ``channel`` from now on. With Redis "now" is when the server
        confirms the subscription, a moment after the call: the concrete listeners have an
        ``async ready()`` that waits for it (bound it with a timeout)."""
        ...

    async def heartbeat(self, worker_id: str, *, ttl_seconds: float) -> None:
        """Record that ``worker_id`` is alive for the next ``ttl_seconds``. Best effort like
        ``publish``: an outage is logged, not raised."""
        ...

    async def live_workers(self) -> int:
        """How many workers sent a heartbeat that has not yet expired; raises when unreachable."""
        ...

    async def ping(self) -> str:
        """``"ok"``, or ``"embedded"`` for the in-memory bus; raises when unreachable."""
        ...

    async def close(self) -> None:
        """Stop background work and end every open subscription and listener."""
        ...
