"""The EventBus contract, run against MemoryBus and RedisBus alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shoal.streaming.bus import Event, EventBus
from shoal.streaming.memory import MemoryBus
from shoal.streaming.redis import RedisBus
from tests.streaming.conftest import REDIS_URL, AnyBus

TIMEOUT = 10


def ev(seq: int, text: str = "x") -> dict[str, Any]:
    return {"seq": seq, "type": "text_delta", "data": {"text": f"{text}{seq}"}}


async def take(it: AsyncIterator[Event], n: int) -> list[int]:
    """The seqs of the next ``n`` events (fails the test if they do not arrive in time)."""
    out: list[int] = []
    async with asyncio.timeout(TIMEOUT):
        while len(out) < n:
            out.append((await anext(it))["seq"])
    return out


async def nothing_within(it: AsyncIterator[Event], seconds: float = 0.3) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await anext(it)
    except TimeoutError:
        return True
    return False


def stream() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


async def test_bus_satisfies_protocol(bus: AnyBus) -> None:
    typed: EventBus = bus
    assert await typed.ping() in ("ok", "embedded")
    assert await bus.ping() == ("embedded" if isinstance(bus, MemoryBus) else "ok")


async def test_order_is_preserved_buffered_and_live(bus: AnyBus) -> None:
    name = stream()
    for seq in range(1, 51):
        await bus.publish(name, ev(seq))
    sub = bus.subscribe(name)
    assert await take(sub, 50) == list(range(1, 51))
    for seq in range(51, 101):
        await bus.publish(name, ev(seq))
    assert await take(sub, 50) == list(range(51, 101))
    await sub.aclose()


async def test_subscribe_after_cursor_gets_exactly_the_rest(bus: AnyBus) -> None:
    name = stream()
    for seq in range(1, 11):
        await bus.publish(name, ev(seq))
    sub = bus.subscribe(name, after=4)
    assert await take(sub, 6) == [5, 6, 7, 8, 9, 10]
    await bus.publish(name, ev(11))
    assert await take(sub, 1) == [11]
    assert await nothing_within(sub)
    await sub.aclose()


async def test_subscriber_before_any_event_gets_them_live(bus: AnyBus) -> None:
    name = stream()
    sub = bus.subscribe(name)
    reader = asyncio.create_task(take(sub, 3))
    await asyncio.sleep(0.05)
    for seq in (1, 2, 3):
        await bus.publish(name, ev(seq))
    assert await reader == [1, 2, 3]


async def test_late_subscriber_gets_buffer_then_live(bus: AnyBus) -> None:
    name = stream()
    early = bus.subscribe(name)
    for seq in (1, 2, 3):
        await bus.publish(name, ev(seq))
    assert await take(early, 3) == [1, 2, 3]
    late = bus.subscribe(name, after=1)
    assert await take(late, 2) == [2, 3]
    for seq in (4, 5):
        await bus.publish(name, ev(seq))
    assert await take(late, 2) == [4, 5]
    assert await take(early, 2) == [4, 5]


async def test_events_arrive_as_published_json(bus: AnyBus) -> None:
    name = stream()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    run_id = uuid.uuid4()
    await bus.publish(
        name, {"seq": 1, "type": "text_delta", "run_id": run_id, "created_at": when, "t": "é\n"}
    )
    (got,) = await bus.buffered(name)
    assert got == {
        "seq": 1,
        "type": "text_delta",
        "run_id": str(run_id),
        "created_at": "2026-01-02T03:04:05+00:00",
        "t": "é\n",
    }


async def test_publish_requires_a_positive_int_seq(bus: AnyBus) -> None:
    for bad in ({}, {"seq": "1"}, {"seq": 0}, {"seq": True}):
        with pytest.raises(ValueError, match="seq"):
            await bus.publish(stream(), bad)


async def test_duplicate_or_older_seq_is_not_delivered_twice(bus: AnyBus) -> None:
    name = stream()
    for seq in (1, 2, 2, 1, 3):
        await bus.publish(name, ev(seq))
    assert [e["seq"] for e in await bus.buffered(name)] == [1, 2, 3]
    sub = bus.subscribe(name)
    assert await take(sub, 3) == [1, 2, 3]
    assert await nothing_within(sub)


async def test_buffered_returns_the_tail_after_cursor(bus: AnyBus) -> None:
    name = stream()
    assert await bus.buffered(name) == []
    for seq in range(1, 6):
        await bus.publish(name, ev(seq))
    assert [e["seq"] for e in await bus.buffered(name, after=3)] == [4, 5]
    assert await bus.buffered(name, after=5) == []


async def test_streams_are_independent(bus: AnyBus) -> None:
    a, b = stream(), stream()
    sub_a = bus.subscribe(a)
    await bus.publish(b, ev(1, "b"))
    await bus.publish(a, ev(7, "a"))
    got = await anext(sub_a)
    assert got["data"]["text"] == "a7"


async def test_200_concurrent_subscribers_each_get_every_event_once(bus: AnyBus) -> None:
    name, total = stream(), 100
    subs = [bus.subscribe(name) for _ in range(100)]
    readers = [asyncio.create_task(take(sub, total)) for sub in subs]
    for seq in range(1, total + 1):
        await bus.publish(name, ev(seq))
        if seq == total // 2:  # the other half attaches mid-stream, with cursors all over
            late = [bus.subscribe(name, after=i % 50) for i in range(100)]
            readers += [
                asyncio.create_task(take(sub, total - i % 50)) for i, sub in enumerate(late)
            ]
            subs += late
        if seq % 10 == 0:
            await asyncio.sleep(0)
    results = await asyncio.gather(*readers)
    assert len(results) == 200
    for i, seqs in enumerate(results):
        start = 1 if i < 100 else (i - 100) % 50 + 1
        assert seqs == list(range(start, total + 1))
    for sub in subs:
        await sub.aclose()


async def test_expire_drops_the_buffer(bus: AnyBus) -> None:
    name, other = stream(), stream()
    for seq in (1, 2, 3):
        await bus.publish(name, ev(seq))
        await bus.publish(other, ev(seq))
    await bus.expire(name, ttl_seconds=0.2)
    assert len(await bus.buffered(name)) == 3
    await asyncio.sleep(0.5)
    assert await bus.buffered(name) == []
    assert len(await bus.buffered(other)) == 3
    assert await nothing_within(bus.subscribe(name))


async def test_signal_reaches_current_listeners_only(bus: AnyBus) -> None:
    channel = f"stop:{uuid.uuid4().hex[:8]}"
    first, second, leaver = (bus.listen(channel) for _ in range(3))
    other = bus.listen(f"{channel}-other")
    for listener in (first, second, leaver, other):
        async with asyncio.timeout(TIMEOUT):
            await listener.ready()
    await bus.signal(channel, "one")
    async with asyncio.timeout(TIMEOUT):
        assert [await anext(first), await anext(second), await anext(leaver)] == ["one"] * 3
    await leaver.aclose()
    newcomer = bus.listen(channel)
    async with asyncio.timeout(TIMEOUT):
        await newcomer.ready()
    await bus.signal(channel, "two")
    async with asyncio.timeout(TIMEOUT):
        assert [await anext(first), await anext(second)] == ["two", "two"]
        assert await anext(newcomer) == "two"  # never saw "one", signalled before it listened
    with pytest.raises(StopAsyncIteration):
        await anext(leaver)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await anext(other)


async def test_heartbeats_expire(bus: AnyBus) -> None:
    assert await bus.live_workers() == 0
    await bus.heartbeat("w-short", ttl_seconds=0.2)
    await bus.heartbeat("w-long", ttl_seconds=10)
    await bus.heartbeat("w-long", ttl_seconds=10)
    assert await bus.live_workers() == 2
    await asyncio.sleep(0.4)
    assert await bus.live_workers() == 1
    await bus.heartbeat("w-short", ttl_seconds=5)
    assert await bus.live_workers() == 2


async def test_closing_an_iterator_ends_a_pending_read(bus: AnyBus) -> None:
    name = stream()
    sub, other = bus.subscribe(name), bus.subscribe(name)
    listener = bus.listen("chan")
    pending = [asyncio.create_task(anext(sub)), asyncio.create_task(anext(listener))]
    await asyncio.sleep(0.05)
    await sub.aclose()
    await listener.aclose()
    async with asyncio.timeout(TIMEOUT):
        for task in pending:
            with pytest.raises(StopAsyncIteration):
                await task
    await bus.publish(name, ev(1))
    assert await take(other, 1) == [1]  # the other subscriber of the stream is unaffected


async def test_close_ends_subscriptions_and_listeners(bus: AnyBus) -> None:
    sub = bus.subscribe(stream())
    listener = bus.listen("chan")
    waiting = asyncio.create_task(anext(sub))
    await asyncio.sleep(0.05)
    await bus.close()
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(StopAsyncIteration):
            await waiting
        with pytest.raises(StopAsyncIteration):
            await anext(listener)
    await bus.publish(stream(), ev(1))  # a closed bus drops, never raises
    await bus.signal("chan", "x")


async def test_buffer_is_capped_to_roughly_maxlen(bus: AnyBus) -> None:
    small: AnyBus = (
        MemoryBus(maxlen=100)
        if isinstance(bus, MemoryBus)
        else RedisBus(REDIS_URL, prefix=bus.prefix, maxlen=100)
    )
    name = stream()
    try:
        for seq in range(1, 1001):
            await small.publish(name, ev(seq))
        seqs = [e["seq"] for e in await small.buffered(name)]
        assert 100 <= len(seqs) <= 300  # "~": trimmed in batches, never below maxlen
        assert seqs == list(range(1001 - len(seqs), 1001))
        late = small.subscribe(name)
        assert await take(late, 1) == [seqs[0]]  # a subscriber behind the buffer sees a gap
    finally:
        await small.close()
