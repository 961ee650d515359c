"""The pub/sub reader behind :class:`~shoal.streaming.redis.RedisBus` (``signal``/``listen``):
ONE task and connection per bus, multiplexing every channel that has a local listener, woken at
once when a new channel needs subscribing, resubscribing everything after a reconnect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from shoal.streaming.memory import Inbox
from shoal.streaming.redis_fanout import (
    CONNECTIVITY,
    Supervised,
    Waker,
    backoff,
    raise_if_cancelling,
)

log = structlog.get_logger(__name__)


class RedisListener:
    """``listen()``'s iterator, registered on creation. :meth:`ready` waits until Redis has
    confirmed the subscription; signals sent after that are delivered (at most once). While
    Redis is unreachable it keeps waiting: bound it with a timeout."""

    def __init__(self, fanout: ChannelFanout, channel: str) -> None:
        self._fanout = fanout
        self._channel = channel
        self.inbox: Inbox[str] = Inbox(fanout.inbox_size)
        fanout.add(channel, self.inbox)

    def __aiter__(self) -> RedisListener:
        return self

    async def __anext__(self) -> str:
        self._fanout.ensure_started()
        message = await self.inbox.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def ready(self) -> None:
        self._fanout.ensure_started()
        event = self._fanout.confirmed.get(self._channel)
        if event is not None and not self.inbox.closed:
            await event.wait()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self.inbox.close()
        self._fanout.remove(self._channel, self.inbox)

    def __del__(self) -> None:
        self.close()


class ChannelFanout(Supervised):
    """Follows every channel that has a local listener on ONE pub/sub connection."""

    def __init__(
        self,
        client: Redis,
        *,
        channel_prefix: str,
        wake_channel: str,
        inbox_size: int,
        send_wake: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__("pubsub-reader")
        self._client = client
        self._prefix = channel_prefix
        self._wake_channel = wake_channel
        self.inbox_size = inbox_size
        self._waker = Waker(send_wake)
        self._listeners: dict[str, set[Inbox[str]]] = {}
        self.confirmed: dict[str, asyncio.Event] = {}
        self._failures = 0

    def add(self, channel: str, inbox: Inbox[str]) -> None:
        if self.closed:
            inbox.close()
            return
        if channel not in self._listeners:
            self._listeners[channel] = set()
            self.confirmed[channel] = asyncio.Event()
            self._waker()
        self._listeners[channel].add(inbox)
        self.ensure_started()

    def remove(self, channel: str, inbox: Inbox[str]) -> None:
        inboxes = self._listeners.get(channel)
        if inboxes is not None:
            inboxes.discard(inbox)
            if not inboxes:
                del self._listeners[channel]
                self.confirmed.pop(channel, None)

    async def _loop(self) -> None:
        while not self.closed:
            pubsub = self._client.pubsub()
            try:
                await self._session(pubsub)
            except CONNECTIVITY as exc:
                if self.closed:
                    return
                self._failures += 1
                if self._failures == 1:
                    log.warning("redis_bus_pubsub_disconnected", error=repr(exc))
                for ready in self.confirmed.values():
                    ready.clear()
            finally:
                with contextlib.suppress(*CONNECTIVITY):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if self._failures:
                await asyncio.sleep(backoff(self._failures))

    async def _session(self, pubsub: PubSub) -> None:
        """One connection's life: (re)subscribe what local listeners want, fan messages out."""
        await pubsub.subscribe(self._wake_channel)
        subscribed: set[str] = set()
        while not self.closed:
            wanted = set(self._listeners)
            if wanted - subscribed:
                await pubsub.subscribe(*(self._prefix + c for c in wanted - subscribed))
                subscribed |= wanted
            if subscribed - wanted:
                await pubsub.unsubscribe(*(self._prefix + c for c in subscribed - wanted))
                subscribed &= wanted
            message = await pubsub.get_message(timeout=5.0)
            raise_if_cancelling()
            if self._failures:
                log.info("redis_bus_pubsub_reconnected")
                self._failures = 0
            if message is not None:
                self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        name = message["channel"].decode()
        if not name.startswith(self._prefix):
            return
        channel = name[len(self._prefix) :]
        if message["type"] == "subscribe" and channel in self.confirmed:
            self.confirmed[channel].set()
        elif message["type"] == "message":
            text = message["data"].decode()
            for inbox in list(self._listeners.get(channel, ())):
                inbox.put(text)

    def stop(self) -> None:
        super().stop()
        self._waker.cancel()
        for inboxes in self._listeners.values():
            for inbox in inboxes:
                inbox.close()
