"""MemoryBus: the embedded event bus (one process, no services).

Each stream is an ordered list of events plus one lazily created :class:`asyncio.Event` that a
publish sets and replaces, so hundreds of subscribers of one stream wait on a single object and a
publish costs O(1) however many are attached; subscribers read the list by position. Signals go
to per-listener inboxes. Behaviour mirrors :class:`~shoal.streaming.redis.RedisBus` (events go
through the same JSON round trip, non-increasing ``seq`` is dropped, buffers are trimmed to
``maxlen``) so the embedded default and production behave alike.
"""

from __future__ import annotations

import asyncio
import json
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import structlog

from shoal.streaming.bus import Event
from shoal.streaming.sse import dumps

log = structlog.get_logger(__name__)

T = TypeVar("T")
DEFAULT_MAXLEN = 10_000
DEFAULT_INBOX_SIZE = 10_000


def event_seq(event: Mapping[str, Any]) -> int:
    """The event's ``seq``; a positive int is required (a programming error otherwise)."""
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError(f"event needs a positive int 'seq', got {seq!r}")
    return seq


def _seq(event: Event) -> int:
    return int(event["seq"])


class Inbox(Generic[T]):
    """A bounded single-consumer queue that drops its oldest item when full and can be closed.

    Dropping (rather than blocking the fan-out) keeps one slow consumer from stalling the
    others; a subscriber then sees a ``seq`` gap, which callers fill from storage.
    """

    def __init__(self, maxlen: int = DEFAULT_INBOX_SIZE) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, item: T) -> None:
        if self.closed:
            return
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("bus_consumer_lagging", inbox_size=self._items.maxlen)
        self._items.append(item)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def get(self) -> T | None:
        """The next item, or ``None`` once closed and drained."""
        while not self._items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class _Stream:
    __slots__ = ("base", "events", "expiry", "subscribers", "waiter")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.base = 0  # absolute position of events[0]; grows as the front is trimmed
        self.waiter: asyncio.Event | None = None
        self.subscribers = 0
        self.expiry: asyncio.TimerHandle | None = None

    @property
    def last_seq(self) -> int:
        return _seq(self.events[-1]) if self.events else 0

    def wake(self) -> None:
        if self.waiter is not None:
            self.waiter.set()
            self.waiter = None

    async def changed(self) -> None:
        if self.waiter is None:
            self.waiter = asyncio.Event()
        await self.waiter.wait()


class MemorySubscription:
    """``subscribe()``'s iterator: attached on creation, reads the stream's list by position."""

    def __init__(self, bus: MemoryBus, stream: str, after: int) -> None:
        self._closed = True  # until attached, so __del__ of a half-built object is a no-op
        self._bus = bus
        self._name = stream
        self._last = after
        self._pos: int | None = None
        self._stream = bus._attach(stream)
        self._closed = False

    def __aiter__(self) -> MemorySubscription:
        return self

    async def __anext__(self) -> Event:
        s = self._stream
        while True:
            if self._closed or self._bus.closed:
                raise StopAsyncIteration
            if self._pos is None or self._pos < s.base:  # first read, or trimmed/expired under us
                self._pos = s.base + bisect_right(s.events, self._last, key=_seq)
            index = self._pos - s.base
            if index < len(s.events):
                event = s.events[index]
                self._pos += 1
                if _seq(event) > self._last:
                    self._last = _seq(event)
                    return event
                continue
            await s.changed()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._detach(self._name, self._stream)
            self._stream.wake()  # a consumer blocked in __anext__ sees the close

    def __del__(self) -> None:
        self.close()


class MemoryListener:
    """``listen()``'s iterator: registered on creation, so it hears every later signal."""

    def __init__(self, bus: MemoryBus, channel: str) -> None:
        self._bus = bus
        self._channel = channel
        self._inbox: Inbox[str] = Inbox()
        if bus.closed:
            self._inbox.close()
            return
        bus._listeners.setdefault(channel, set()).add(self._inbox)

    def __aiter__(self) -> MemoryListener:
        return self

    async def __anext__(self) -> str:
        message = await self._inbox.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def ready(self) -> None:
        """Listening is established (immediately, for the in-memory bus)."""

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._inbox.close()
        inboxes = self._bus._listeners.get(self._channel)
        if inboxes is not None:
            inboxes.discard(self._inbox)
            if not inboxes:
                del self._bus._listeners[self._channel]

    def __del__(self) -> None:
        self.close()


class MemoryBus:
    """The in-process :class:`~shoal.streaming.bus.EventBus` used when no Redis is configured."""

    def __init__(self, *, maxlen: int = DEFAULT_MAXLEN) -> None:
        self.maxlen = maxlen
        self.closed = False
        self._streams: dict[str, _Stream] = {}
        self._listeners: dict[str, set[Inbox[str]]] = {}
        self._workers: dict[str, float] = {}

    # -- streams --------------------------------------------------------------------------------
    async def publish(self, stream: str, event: Mapping[str, Any]) -> None:
        seq = event_seq(event)
        copy: Event = json.loads(dumps(event))  # same JSON round trip as Redis: parity of payloads
        if self.closed:
            return
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream()
        if seq <= s.last_seq:
            log.debug("bus_event_not_newer", stream=stream, seq=seq, last_seq=s.last_seq)
            return
        s.events.append(copy)
        excess = len(s.events) - self.maxlen
        if excess > max(1, self.maxlen // 10):  # trim in batches, like Redis's MAXLEN ~
            del s.events[:excess]
            s.base += excess
        s.wake()

    def subscribe(self, stream: str, *, after: int = 0) -> MemorySubscription:
        return MemorySubscription(self, stream, after)

    async def buffered(self, stream: str, *, after: int = 0) -> list[Event]:
        s = self._streams.get(stream)
        if s is None:
            return []
        return s.events[bisect_right(s.events, after, key=_seq) :]

    async def expire(self, stream: str, *, ttl_seconds: float) -> None:
        s = self._streams.get(stream)
        if s is None:
            return
        if s.expiry is not None:
            s.expiry.cancel()
        if ttl_seconds <= 0:
            self._drop(stream)
        else:
            loop = asyncio.get_running_loop()
            s.expiry = loop.call_later(ttl_seconds, self._drop, stream)

    def _drop(self, stream: str) -> None:
        s = self._streams.get(stream)
        if s is None:
            return
        s.expiry = None
        s.base += len(s.events)
        s.events = []
        if s.subscribers == 0:
            del self._streams[stream]

    def _attach(self, stream: str) -> _Stream:
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream()
        s.subscribers += 1
        return s

    def _detach(self, stream: str, s: _Stream) -> None:
        s.subscribers -= 1
        idle = s.subscribers <= 0 and not s.events and s.expiry is None
        if idle and self._streams.get(stream) is s:
            del self._streams[stream]

    # -- signals --------------------------------------------------------------------------------
    async def signal(self, channel: str, message: str) -> None:
        for inbox in list(self._listeners.get(channel, ())):
            inbox.put(message)

    def listen(self, channel: str) -> MemoryListener:
        return MemoryListener(self, channel)

    # -- workers --------------------------------------------------------------------------------
    async def heartbeat(self, worker_id: str, *, ttl_seconds: float) -> None:
        self._workers[worker_id] = time.monotonic() + ttl_seconds

    async def live_workers(self) -> int:
        now = time.monotonic()
        for worker_id, until in list(self._workers.items()):
            if until <= now:
                del self._workers[worker_id]
        return len(self._workers)

    async def ping(self) -> str:
        return "embedded"

    async def close(self) -> None:
        """End every subscription and listener and cancel pending expiries."""
        self.closed = True
        for s in self._streams.values():
            if s.expiry is not None:
                s.expiry.cancel()
            s.wake()
        for inboxes in self._listeners.values():
            for inbox in inboxes:
                inbox.close()
