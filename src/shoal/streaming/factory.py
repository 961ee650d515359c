"""Choose the event bus from settings: Redis when ``SHOAL_REDIS_URL`` is set, else memory."""

from __future__ import annotations

from shoal.config import Settings
from shoal.streaming.bus import EventBus


def create_bus(settings: Settings) -> EventBus:
    if settings.redis_url:
        from shoal.streaming.redis import RedisBus

        return RedisBus(settings.redis_url)
    from shoal.streaming.memory import MemoryBus

    return MemoryBus()
