"""RedisBus-only behaviour: bounded connections and surviving a Redis restart.

Restart tests run a PRIVATE ``redis-server`` on a free port (the shared one is never touched).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shoal.streaming.redis import RedisBus
from tests.conftest import service_unavailable
from tests.streaming.conftest import REDIS_URL, redis_admin
from tests.streaming.test_bus import ev, take

pytestmark = pytest.mark.services


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_unavailable("redis-server binary not found")
            return
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(
            [binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.02)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def shared_bus() -> AsyncIterator[tuple[RedisBus, Redis]]:
    admin = await redis_admin()
    prefix = f"shoal-test:{uuid.uuid4().hex[:12]}:"
    bus = RedisBus(REDIS_URL, prefix=prefix)
    try:
        yield bus, admin
    finally:
        await bus.close()
        keys = [k async for k in admin.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


async def connections_of(admin: Redis, bus: RedisBus) -> int:
    clients = await admin.client_list()
    return sum(1 for client in clients if client.get("name") == bus.client_name)


async def test_connections_stay_bounded_with_many_subscribers(
    shared_bus: tuple[RedisBus, Redis],
) -> None:
    bus, admin = shared_bus
    names = [f"run-{i}" for i in range(100)]
    subs = [bus.subscribe(name) for name in names]
    readers = [asyncio.create_task(take(sub, 2)) for sub in subs]
    listeners = [bus.listen(f"stop:{i}") for i in range(20)]
    for listener in listeners:
        async with asyncio.timeout(10):
            await listener.ready()
    for seq in (1, 2):
        await asyncio.gather(*(bus.publish(name, ev(seq)) for name in names))
    assert await asyncio.gather(*readers) == [[1, 2]] * 100
    used = await connections_of(admin, bus)
    assert 1 <= used <= 6  # command pool (4) + one reader + one pub/sub, whatever the fan-out


async def test_publish_and_signal_never_raise_or_stall_when_redis_is_down() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bus = RedisBus(f"redis://127.0.0.1:{port}/0")
    try:
        started = time.monotonic()
        for seq in range(1, 201):
            await bus.publish("run", ev(seq))
            await bus.signal("stop:run", "stop")
        await bus.heartbeat("w", ttl_seconds=5)
        await bus.expire("run", ttl_seconds=5)
        assert await bus.buffered("run") == []
        assert time.monotonic() - started < 3  # a breaker, not one timeout per call
        with pytest.raises((RedisError, OSError)):
            await bus.ping()
        with pytest.raises((RedisError, OSError)):
            await bus.live_workers()
    finally:
        await bus.close()


async def test_subscriber_and_listener_survive_a_redis_restart(
    private_redis: PrivateRedis,
) -> None:
    bus = RedisBus(private_redis.url, block_ms=200)
    try:
        sub = bus.subscribe("run")
        listener = bus.listen("stop:run")
        async with asyncio.timeout(10):
            await listener.ready()
        for seq in (1, 2):
            await bus.publish("run", ev(seq))
        assert await take(sub, 2) == [1, 2]

        private_redis.kill()
        for seq in range(3, 13):  # during the outage: dropped, never raised
            await bus.publish("run", ev(seq))
            await bus.signal("stop:run", "lost")
            await asyncio.sleep(0.05)
        private_redis.start()

        # The breaker and the readers reconnect with backoff: keep publishing until one lands.
        async with asyncio.timeout(20):
            seq, got = 13, None
            while got is None:
                await bus.publish("run", ev(seq))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.3):
                        got = (await anext(sub))["seq"]
                seq += 1
            received = [got]  # the post-restart events, in order, after the gap
            await bus.publish("run", ev(seq))
            while received[-1] != seq:
                received.append((await anext(sub))["seq"])
            assert received[0] >= 13
            assert received == list(range(received[0], seq + 1))

            message = None
            while message is None:
                await bus.signal("stop:run", "stop")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.3):
                        message = await anext(listener)
            assert message == "stop"
        assert await bus.ping() == "ok"
    finally:
        await bus.close()


async def test_reader_is_not_wedged_when_the_restarted_key_starts_over(
    private_redis: PrivateRedis,
) -> None:
    """After a restart the stream key is gone; a late subscriber and the reader both resume."""
    bus = RedisBus(private_redis.url, block_ms=200)
    try:
        sub = bus.subscribe("run", after=0)
        for seq in range(1, 6):
            await bus.publish("run", ev(seq))
        assert await take(sub, 5) == [1, 2, 3, 4, 5]
        private_redis.kill()
        private_redis.start()
        async with asyncio.timeout(20):
            seq, got = 6, None
            while got is None:
                await bus.publish("run", ev(seq))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.3):
                        got = (await anext(sub))["seq"]
                seq += 1
        late = bus.subscribe("run", after=0)
        assert (await take(late, 1))[0] == got  # the buffer only holds post-restart events
    finally:
        await bus.close()


async def test_new_streams_and_channels_are_picked_up_without_waiting_for_a_timeout(
    redis_prefix: str,
) -> None:
    bus = RedisBus(REDIS_URL, prefix=redis_prefix, block_ms=5000)
    try:
        first = bus.subscribe("first")
        first_read = asyncio.create_task(anext(first))
        early = bus.listen("early")
        await early.ready()
        await asyncio.sleep(0.3)  # the reader is now blocked in XREAD, pub/sub in a 5 s read
        started = time.monotonic()
        second = bus.subscribe("second")
        second_read = asyncio.create_task(anext(second))
        await asyncio.sleep(0.05)
        await bus.publish("second", ev(1))
        assert (await asyncio.wait_for(second_read, 2))["seq"] == 1
        late = bus.listen("late")
        await asyncio.wait_for(late.ready(), 2)
        assert time.monotonic() - started < 1.5
        first_read.cancel()
    finally:
        await bus.close()
