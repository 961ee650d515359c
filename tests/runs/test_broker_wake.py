"""RabbitMQ wake-ups do not hold up the start's 202: the publish confirm is awaited in the
background, and a failed send leaves the run to the sweeper's re-wake (test_sweeper.py's
``test_a_lost_wakeup_is_sent_again``)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import structlog

from shoal.worker.broker import DramatiqBroker


class _SlowBroker:
    """A Dramatiq broker stand-in whose publish confirm takes ``delay`` (or fails)."""

    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.sent: list[Any] = []
        self.closed = threading.Event()

    def enqueue(self, message: Any) -> None:
        time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("RabbitMQ is down")
        self.sent.append(message.args)

    def close(self) -> None:
        self.closed.set()


async def test_a_wake_up_returns_before_the_broker_confirms() -> None:
    fake = _SlowBroker(delay=0.5)
    broker = DramatiqBroker("amqp://unused", broker=fake)
    began = time.perf_counter()
    assert await broker.wake("run-1") is True
    assert time.perf_counter() - began < 0.25  # not the 0.5 s confirm
    assert fake.sent == []
    await broker.close()  # close waits for the accepted wake-ups to be sent
    assert fake.sent == [("run-1",)]
    assert fake.closed.is_set()


async def test_a_failed_send_is_logged_not_raised() -> None:
    broker = DramatiqBroker("amqp://unused", broker=_SlowBroker(delay=0.0, fail=True))
    with structlog.testing.capture_logs() as logs:
        assert await broker.wake("run-2") is True
        for _ in range(100):
            if any(e["event"] == "broker_send_failed" for e in logs):
                break
            await asyncio.sleep(0.02)
    failed = [e for e in logs if e["event"] == "broker_send_failed"]
    assert failed and failed[0]["run_id"] == "run-2"
    assert await broker.send("run-3") is False  # the awaited form reports the failure
    await broker.close()
