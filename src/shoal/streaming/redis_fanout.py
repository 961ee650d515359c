"""The stream reader behind :class:`~shoal.streaming.redis.RedisBus`, and what it shares with
the pub/sub reader (:mod:`shoal.streaming.redis_pubsub`).

* :class:`StreamFanout` — ONE task and connection per bus: ``XREAD BLOCK`` over every stream that
  has local subscribers, entries fanned out to their inboxes.
* :class:`~shoal.streaming.redis_pubsub.ChannelFanout` — ONE task and pub/sub connection per
  bus, multiplexing every channel that has local listeners.

Both pick up a new stream or channel at once (a private "wake" stream/channel interrupts the
blocking read), drop the ones nobody follows any more, and survive Redis outages and restarts by
reconnecting with backoff. Events published during an outage are simply missed; subscribers see
the ``seq`` gap and callers fill it from storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from redis.asyncio import Connection, ConnectionPool
from redis.exceptions import RedisError

from shoal.streaming.bus import Event
from shoal.streaming.memory import Inbox

log = structlog.get_logger(__name__)

CONNECTIVITY = (RedisError, OSError, TimeoutError)
RangeReader = Callable[[str, int], Awaitable[list[Event]]]


def backoff(failures: int, *, cap: float = 2.0) -> float:
    """Jittered exponential delay: 0.1 s, 0.2 s, … up to ``cap``."""
    return min(cap, 0.1 * 2.0 ** max(0, failures - 1)) * random.uniform(0.5, 1.0)  # noqa: S311


def decode_entry(raw: object) -> Event | None:
    """The event stored in a stream entry's ``e`` field (``None``, logged, when unusable)."""
    try:
        event = json.loads(raw) if isinstance(raw, bytes | str) else None
    except ValueError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
        log.warning("bus_bad_entry", entry=str(raw)[:200])
        return None
    return event


def raise_if_cancelling() -> None:
    """Honour a cancellation that Python 3.11's ``asyncio.wait_for`` (inside redis-py's socket
    writes) swallows when it races a completed write; otherwise the loop would run on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Waker:
    """Coalesced fire-and-forget ``send()``: at least one send starts after every call."""

    def __init__(self, send: Callable[[], Awaitable[None]]) -> None:
        self._send = send
        self._dirty = False
        self._task: asyncio.Task[None] | None = None

    def __call__(self) -> None:
        self._dirty = True
        if self._task is not None and not self._task.done():
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the reader starts later anyway
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._dirty:
            self._dirty = False
            await self._send()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Supervised:
    """A background loop started on demand and restarted after an unexpected error."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        raise NotImplementedError

    def ensure_started(self) -> None:
        if self.closed or (self._task is not None and not self._task.done()):
            return
        with contextlib.suppress(RuntimeError):  # created outside a loop: started on first use
            self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self.closed:
            try:
                await self._loop()
                return
            except Exception:
                log.exception("redis_bus_task_crashed", task=self.name)
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        """Cancel the loop and end every local iterator (then await :meth:`join`)."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()

    async def join(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def _bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


class _Watch:
    """A followed stream: its subscribers and the reader's position, kept RESP-encoded so an
    ``XREAD`` over thousands of streams is a ``b"".join`` rather than thousands of packings."""

    __slots__ = ("id_part", "key", "key_part", "subs")

    def __init__(self, key: str, last_id: bytes) -> None:
        self.key = key.encode()
        self.key_part = _bulk(self.key)
        self.id_part = _bulk(last_id)
        self.subs: set[RedisSubscription] = set()


class RedisSubscription:
    """``subscribe()``'s iterator, attached on creation. The first local subscriber of a stream
    is fed by the reader from ``after``; a later one reads the buffer with ``XRANGE``, then its
    inbox, skipping what it already yielded (by ``seq``)."""

    def __init__(self, fanout: StreamFanout, key: str, after: int) -> None:
        self._closed = True  # until attached, so __del__ of a half-built object is a no-op
        self._fanout = fanout
        self.key = key
        self._last = after
        self.inbox: Inbox[Event] = Inbox(fanout.inbox_size)
        self._pending: deque[Event] | None = None
        self._closed = False
        self._needs_range = fanout.attach(self, after)

    def __aiter__(self) -> RedisSubscription:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._pending is None:
            self._fanout.ensure_started()
            found = await self._fanout.read_range(self.key, self._last) if self._needs_range else []
            # A cancel swallowed by redis-py's XRANGE would leave the caller waiting on the
            # inbox for ever (an SSE stream that never closes after a Redis restart).
            raise_if_cancelling()
            self._pending = deque(found)
        while True:
            event = self._pending.popleft() if self._pending else await self.inbox.get()
            if event is None:
                raise StopAsyncIteration
            if event["seq"] > self._last:
                self._last = event["seq"]
                return event

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.inbox.close()
            self._fanout.detach(self)

    def __del__(self) -> None:
        self.close()


class StreamFanout(Supervised):
    """Follows every stream that has a local subscriber with ONE ``XREAD BLOCK`` loop."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        wake_key: str,
        block_ms: int,
        inbox_size: int,
        read_range: RangeReader,
        send_wake: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__("stream-reader")
        self._pool = pool
        self._conn: Connection | None = None
        self._wake = _Watch(wake_key, b"0-0")
        self._head = b"".join(
            _bulk(arg) for arg in (b"XREAD", b"COUNT", b"1000", b"BLOCK", b"%d" % block_ms)
        ) + _bulk(b"STREAMS")
        self.inbox_size = inbox_size
        self.read_range = read_range
        self._waker = Waker(send_wake)
        self._watches: dict[str, _Watch] = {}
        self._watch_added = asyncio.Event()
        self._blocking = False

    def attach(self, sub: RedisSubscription, after: int) -> bool:
        """Attach ``sub``; True when it joined an existing watch (and must XRANGE itself)."""
        if self.closed:
            sub.inbox.close()
            return False
        watch = self._watches.get(sub.key)
        joined = watch is not None
        if watch is None:
            watch = self._watches[sub.key] = _Watch(sub.key, b"%d-0" % max(after, 0))
            self._watch_added.set()
            if self._blocking:
                self._waker()
        watch.subs.add(sub)
        self.ensure_started()
        return joined

    def detach(self, sub: RedisSubscription) -> None:
        watch = self._watches.get(sub.key)
        if watch is not None:
            watch.subs.discard(sub)
            if not watch.subs:
                del self._watches[sub.key]

    async def _loop(self) -> None:
        failures = 0
        while not self.closed:
            if not self._watches:
                self._watch_added.clear()
                await self._watch_added.wait()
                continue
            snapshot = {w.key: w for w in self._watches.values()}
            watches = [*snapshot.values(), self._wake]
            try:
                self._blocking = True
                response = await self._xread(watches)
            except CONNECTIVITY as exc:
                if self.closed:
                    return
                failures += 1
                if failures == 1:
                    log.warning("redis_bus_reader_disconnected", error=repr(exc))
                await asyncio.sleep(backoff(failures))
                continue
            finally:
                self._blocking = False
            raise_if_cancelling()
            if failures:
                log.info("redis_bus_reader_reconnected")
                failures = 0
            self._dispatch(snapshot, cast(list[Any], response or []))

    async def _xread(self, watches: list[_Watch]) -> Any:
        """``XREAD COUNT … BLOCK … STREAMS k… id…`` on this fan-out's own connection."""
        packed = b"".join(
            [
                b"*%d\r\n" % (6 + 2 * len(watches)),
                self._head,
                *(w.key_part for w in watches),
                *(w.id_part for w in watches),
            ]
        )
        if self._conn is None:
            self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await self._conn.send_packed_command(packed, check_health=False)
            return await self._conn.read_response()
        except BaseException:
            await self._conn.disconnect()  # never reuse a connection with a half-read reply
            raise

    def _dispatch(self, snapshot: dict[bytes, _Watch], response: list[Any]) -> None:
        """Fan a raw RESP2 ``XREAD`` reply ``[[key, [[id, [field, value, …]], …]], …]`` out."""
        for key, entries in response:
            if not entries:
                continue
            if key == self._wake.key:
                self._wake.id_part = _bulk(entries[-1][0])
                continue
            watch = snapshot.get(key)
            if watch is None or self._watches.get(key.decode()) is not watch:
                continue  # unwatched (or re-watched from another position) meanwhile
            for entry_id, fields in entries:
                watch.id_part = _bulk(entry_id)
                event = decode_entry(dict(zip(fields[::2], fields[1::2], strict=True)).get(b"e"))
                if event is not None:
                    for sub in list(watch.subs):
                        sub.inbox.put(event)

    def stop(self) -> None:
        super().stop()
        self._waker.cancel()
        for watch in self._watches.values():
            for sub in watch.subs:
                sub.inbox.close()
        self._watch_added.set()
