"""Wake-ups: the broker tells a worker "this run is ready", it never carries the run itself.

The run row is the durable truth (committed before any wake-up is sent); a wake-up can be lost
(broker down, worker crash) and the sweeper re-sends stale ones. Two implementations:
:class:`InProcessBroker` (embedded: hands the id straight to this process's executor) and
:class:`DramatiqBroker` (RabbitMQ via Dramatiq, for separate ``shoal worker`` processes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

log = structlog.get_logger(__name__)

RUN_QUEUE = "shoal.runs"
RUN_ACTOR = "run_agent_background"


class Broker(Protocol):
    async def wake(self, run_id: str) -> bool:
        """Ask a worker to take ``run_id`` without waiting for the broker's confirm. False
        when it was refused at once; a wake-up lost later (broker unreachable) leaves the run
        queued, and the sweeper wakes it again."""
        ...

    async def ping(self) -> str:
        """``"ok"``/``"embedded"``; raises when unreachable."""
        ...

    async def close(self) -> None: ...


class InProcessBroker:
    """Embedded: the wake-up is a call into this process's run executor, made in a task of its
    own. The handler waits for a free executor slot, and the caller must not wait with it: an
    HTTP request would hang while the worker is full, and a finishing run (which still holds
    its slot) waking the next one would deadlock."""

    def __init__(self) -> None:
        self._handler: Callable[[str], Awaitable[None]] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def bind(self, handler: Callable[[str], Awaitable[None]]) -> None:
        self._handler = handler

    async def wake(self, run_id: str) -> bool:
        if self._handler is None:
            return False
        task = asyncio.create_task(self._deliver(self._handler, run_id), name=f"wake:{run_id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    @staticmethod
    async def _deliver(handler: Callable[[str], Awaitable[None]], run_id: str) -> None:
        try:
            await handler(run_id)
        except Exception:  # the run stays queued; the sweeper wakes it again
            log.exception("wake_failed", run_id=run_id)

    async def ping(self) -> str:
        return "embedded"

    async def close(self) -> None:
        self._handler = None
        for task in list(self._pending):
            task.cancel()
        for task in list(self._pending):
            with contextlib.suppress(BaseException):
                await task


def rabbitmq_url(url: str, *, timeout_seconds: float = 3.0) -> str:
    """Add bounded connection attempts/timeouts so an outage fails fast instead of hanging."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("connection_attempts", "1")
    query.setdefault("socket_timeout", str(timeout_seconds))
    query.setdefault("blocked_connection_timeout", str(timeout_seconds))
    query.setdefault("heartbeat", "30")
    return urlunsplit(parts._replace(query=urlencode(query)))


def make_dramatiq_broker(url: str) -> Any:
    """A Dramatiq RabbitMQ broker with no retries (the sweeper owns recovery) and no result
    backend. Imported lazily so the API starts without touching pika when embedded."""
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, ShutdownNotifications

    broker = RabbitmqBroker(
        url=rabbitmq_url(url),
        middleware=[AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines()],
        confirm_delivery=True,
    )
    dramatiq.set_broker(broker)
    return broker


class DramatiqBroker:
    """Sends ``run_agent_background(run_id)`` messages to RabbitMQ."""

    def __init__(
        self, url: str, *, send_timeout_seconds: float = 5.0, broker: Any | None = None
    ) -> None:
        self._broker = broker if broker is not None else make_dramatiq_broker(url)
        self._timeout = send_timeout_seconds
        self._pending: set[asyncio.Task[bool]] = set()

    @property
    def dramatiq_broker(self) -> Any:
        return self._broker

    def _send(self, run_id: str) -> None:
        from dramatiq import Message

        message: Message[Any] = Message(
            queue_name=RUN_QUEUE, actor_name=RUN_ACTOR, args=(run_id,), kwargs={}, options={}
        )
        self._broker.enqueue(message)

    async def wake(self, run_id: str) -> bool:
        """Send the wake-up in the background: the caller (a start request, after its commit)
        does not wait for RabbitMQ's publish confirm. A send that fails is logged; the run
        stays queued and the sweeper wakes it again after ``SHOAL_REQUEUE_SECONDS``."""
        task = asyncio.create_task(self.send(run_id), name=f"wake:{run_id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def send(self, run_id: str) -> bool:
        """Publish one wake-up and wait for the broker's confirm. False when it failed."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self._send, run_id), self._timeout)
        except Exception as exc:  # broker down: the run stays queued, the sweeper retries
            log.warning("broker_send_failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    async def ping(self) -> str:
        def _check() -> None:
            connection = self._broker.connection
            if not connection.is_open:
                raise ConnectionError("RabbitMQ connection is closed")
            connection.process_data_events(0)

        await asyncio.wait_for(asyncio.to_thread(_check), self._timeout)
        return "ok"

    async def close(self) -> None:
        if self._pending:  # wake-ups already accepted: give them their send timeout
            await asyncio.wait(list(self._pending), timeout=self._timeout)
        await asyncio.to_thread(self._broker.close)
