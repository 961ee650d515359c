"""Bus fixtures: every behavioural test runs on the MemoryBus and on the RedisBus.

Redis tests use the shared server (``SHOAL_TEST_REDIS_URL``, default 127.0.0.1:6379) under a
unique key prefix per test and delete their keys afterwards; they carry the ``services`` marker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shoal.streaming.memory import MemoryBus
from shoal.streaming.redis import RedisBus
from tests.conftest import service_unavailable

REDIS_URL = os.environ.get("SHOAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

AnyBus = MemoryBus | RedisBus


async def redis_admin() -> Redis:
    """A plain client on the shared test Redis (skips/fails the test when it is down)."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        service_unavailable(f"Redis at {REDIS_URL}: {exc!r}")
    return client


async def delete_prefix(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A unique key prefix on the shared Redis, cleaned up after the test."""
    client = await redis_admin()
    prefix = f"shoal-test:{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[AnyBus]:
    if request.param == "memory":
        memory = MemoryBus()
        yield memory
        await memory.close()
        return
    client = await redis_admin()
    prefix = f"shoal-test:{uuid.uuid4().hex[:12]}:"
    redis_bus = RedisBus(REDIS_URL, prefix=prefix)
    try:
        yield redis_bus
    finally:
        await redis_bus.close()
        await delete_prefix(client, prefix)
        await client.aclose()
