"""RedisBus: live fan-out over Redis Streams and pub/sub, shared by many processes.

Keys (``prefix`` defaults to ``shoal:``):

* ``{prefix}stream:{stream}`` — a Redis Stream per bus stream, capped by ``XADD … MAXLEN ~``.
  The entry id is ``{seq}-0`` and field ``e`` holds the event's JSON, so ``XRANGE`` from
  ``{after+1}-0`` is exactly "events with ``seq > after``", Redis itself refuses a duplicate or
  older ``seq``, and after a Redis restart a reader continuing from its last id is not wedged
  (new events carry higher ``seq``, hence higher ids).
* ``{prefix}chan:{channel}`` — pub/sub channels of ``signal``/``listen``.
* ``{prefix}worker:{id}`` — heartbeat keys with a TTL.
* ``{prefix}wake:{bus id}`` — private stream and channel that wake this instance's readers
  when a new stream or channel needs following.

Connections per instance stay bounded whatever the number of subscribers: a blocking pool for
commands (``max_connections``), one reader connection (:mod:`shoal.streaming.redis_fanout`) and
one pub/sub connection (:mod:`shoal.streaming.redis_pubsub`). Outages never raise out of
``publish``, ``signal``, ``expire`` or ``heartbeat``: a circuit breaker drops and logs, so an
outage costs one connect timeout rather than one per call, and ``buffered`` answers ``[]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ResponseError

from shoal.streaming.bus import Event
from shoal.streaming.memory import DEFAULT_INBOX_SIZE, DEFAULT_MAXLEN, event_seq
from shoal.streaming.redis_fanout import (
    CONNECTIVITY,
    RedisSubscription,
    StreamFanout,
    backoff,
    decode_entry,
)
from shoal.streaming.redis_pubsub import ChannelFanout, RedisListener
from shoal.streaming.sse import dumps

__all__ = ["RedisBus", "RedisListener", "RedisSubscription"]

log = structlog.get_logger(__name__)


class _Breaker:
    """Opens after a connectivity failure; while open, best-effort commands are dropped."""

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.dropped = 0

    def allow(self) -> bool:
        if time.monotonic() < self.open_until:
            self.dropped += 1
            return False
        return True

    def ok(self) -> None:
        if self.failures:
            log.info("redis_bus_recovered", dropped=self.dropped)
            self.failures = self.dropped = 0
            self.open_until = 0.0

    def fail(self, op: str, exc: BaseException) -> None:
        self.failures += 1
        self.dropped += 1
        self.open_until = time.monotonic() + backoff(self.failures)
        if self.failures == 1:
            log.warning("redis_bus_unavailable", op=op, error=repr(exc))


class RedisBus:
    """The :class:`~shoal.streaming.bus.EventBus` on Redis (``SHOAL_REDIS_URL``)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "shoal:",
        maxlen: int = DEFAULT_MAXLEN,
        max_connections: int = 4,
        block_ms: int = 500,
        connect_timeout: float = 2.0,
        command_timeout: float = 5.0,
        inbox_size: int = DEFAULT_INBOX_SIZE,
    ) -> None:
        self.prefix = prefix
        self.maxlen = maxlen
        self.instance_id = uuid.uuid4().hex[:12]
        self.client_name = f"shoal-bus-{self.instance_id}"
        common: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_keepalive": True,
            "client_name": self.client_name,
            "protocol": 2,
        }
        # Commands get one quick retry (it reconnects a connection Redis dropped, e.g. after a
        # restart); the two reader loops reconnect by themselves, with backoff.
        no_retry = Retry(NoBackoff(), 0)
        self._pools: list[ConnectionPool] = [
            BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=command_timeout,
                socket_timeout=command_timeout,
                health_check_interval=30,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
                **common,
            ),
            ConnectionPool.from_url(
                url,
                max_connections=1,
                socket_timeout=block_ms / 1000 + command_timeout,
                retry=no_retry,
                **common,
            ),
            ConnectionPool.from_url(
                url, max_connections=2, socket_timeout=command_timeout, retry=no_retry, **common
            ),
        ]
        self._cmd = Redis(connection_pool=self._pools[0])
        self._breaker = _Breaker()
        self._closed = False
        self._wake_key = f"{prefix}wake:{self.instance_id}"
        self._streams = StreamFanout(
            self._pools[1],
            wake_key=self._wake_key,
            block_ms=block_ms,
            inbox_size=inbox_size,
            read_range=self._range,
            send_wake=lambda: self._best_effort("wake", self._xadd_wake),
        )
        self._channels = ChannelFanout(
            Redis(connection_pool=self._pools[2]),
            channel_prefix=f"{prefix}chan:",
            wake_channel=self._wake_key,
            inbox_size=inbox_size,
            send_wake=lambda: self._best_effort(
                "wake", lambda: self._cmd.publish(self._wake_key, "1")
            ),
        )

    def stream_key(self, stream: str) -> str:
        return f"{self.prefix}stream:{stream}"

    # -- streams --------------------------------------------------------------------------------
    async def publish(self, stream: str, event: Mapping[str, Any]) -> None:
        """See the protocol. Also requires a positive int ``seq`` (``ValueError``) and a
        JSON-able event (``TypeError``); a ``seq`` not above the stream's last is dropped."""
        seq = event_seq(event)
        payload = dumps(event)
        try:
            await self._guard(
                "publish",
                lambda: self._cmd.xadd(
                    self.stream_key(stream),
                    {"e": payload},
                    id=f"{seq}-0",
                    maxlen=self.maxlen,
                    approximate=True,
                ),
            )
        except ResponseError as exc:
            if "equal or smaller" in str(exc):
                log.debug("bus_event_not_newer", stream=stream, seq=seq)
            else:
                log.warning("redis_bus_error", op="publish", stream=stream, error=str(exc))

    def subscribe(self, stream: str, *, after: int = 0) -> RedisSubscription:
        return RedisSubscription(self._streams, self.stream_key(stream), after)

    async def buffered(self, stream: str, *, after: int = 0) -> list[Event]:
        return await self._range(self.stream_key(stream), after)

    async def expire(self, stream: str, *, ttl_seconds: float) -> None:
        key, ms = self.stream_key(stream), max(0, int(ttl_seconds * 1000))
        await self._best_effort("expire", lambda: self._cmd.pexpire(key, ms))

    async def _range(self, key: str, after: int) -> list[Event]:
        start = f"{after + 1}-0" if after >= 0 else "-"
        try:
            entries = await self._guard("xrange", lambda: self._cmd.xrange(key, min=start))
        except ResponseError as exc:
            log.warning("redis_bus_error", op="xrange", key=key, error=str(exc))
            return []
        found = (decode_entry(fields.get(b"e")) for _id, fields in entries or ())
        return [event for event in found if event is not None]

    async def _xadd_wake(self) -> None:
        async with self._cmd.pipeline(transaction=False) as pipe:
            pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.pexpire(self._wake_key, 60_000)
            await pipe.execute()

    # -- signals --------------------------------------------------------------------------------
    async def signal(self, channel: str, message: str) -> None:
        name = f"{self.prefix}chan:{channel}"
        await self._best_effort("signal", lambda: self._cmd.publish(name, message))

    def listen(self, channel: str) -> RedisListener:
        return RedisListener(self._channels, channel)

    # -- workers --------------------------------------------------------------------------------
    async def heartbeat(self, worker_id: str, *, ttl_seconds: float) -> None:
        """Best effort like ``publish``: an unreachable Redis is logged, not raised."""
        key, ms = f"{self.prefix}worker:{worker_id}", max(1, int(ttl_seconds * 1000))
        await self._best_effort("heartbeat", lambda: self._cmd.set(key, "1", px=ms))

    async def live_workers(self) -> int:
        """Raises when Redis is unreachable (the readiness check reports it)."""
        pattern = _glob_escape(f"{self.prefix}worker:") + "*"
        return len([key async for key in self._cmd.scan_iter(match=pattern, count=1000)])

    async def ping(self) -> str:
        await self._cmd.ping()
        return "ok"

    # -- plumbing -------------------------------------------------------------------------------
    async def _guard(self, op: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a best-effort command: ``None`` when Redis is unreachable (breaker open or a
        connectivity error). A server-side error (``ResponseError``) is raised to the caller."""
        if self._closed or not self._breaker.allow():
            return None
        try:
            result = await call()
        except ResponseError:
            self._breaker.ok()
            raise
        except CONNECTIVITY as exc:
            self._breaker.fail(op, exc)
            return None
        self._breaker.ok()
        return result

    async def _best_effort(self, op: str, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            await self._guard(op, call)
        except ResponseError as exc:
            log.warning("redis_bus_error", op=op, error=str(exc))

    async def close(self) -> None:
        """Stop the readers, end every subscription and listener, drop the connections."""
        if self._closed:
            return
        self._closed = True
        self._streams.stop()
        self._channels.stop()
        for pool in self._pools[1:]:  # fails in-flight reads, should a cancellation get lost
            await pool.disconnect()
        await self._streams.join()
        await self._channels.join()
        with contextlib.suppress(*CONNECTIVITY):
            async with asyncio.timeout(1.0):
                await self._cmd.delete(self._wake_key)
        await self._pools[0].disconnect()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
