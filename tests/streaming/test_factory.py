from __future__ import annotations

from shoal.config import Settings
from shoal.streaming.factory import create_bus
from shoal.streaming.memory import MemoryBus
from shoal.streaming.redis import RedisBus


async def test_embedded_settings_get_the_memory_bus() -> None:
    bus = create_bus(Settings(redis_url=None))
    assert isinstance(bus, MemoryBus)
    assert await bus.ping() == "embedded"


async def test_a_redis_url_gets_the_redis_bus_without_connecting_yet() -> None:
    bus = create_bus(Settings(redis_url="redis://127.0.0.1:1/0"))  # nothing listens on port 1
    assert isinstance(bus, RedisBus)
    await bus.publish("run", {"seq": 1})  # unreachable: dropped, not raised
    await bus.close()
