"""What the API and the workers share at run time: settings, DB, bus and broker.

One ``Runtime`` per process, created by the app's lifespan (or ``shoal worker``). It is the
only place that knows how to turn "this run changed" into bus traffic, so the service and the
worker never talk to Redis or RabbitMQ directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shoal.config import Settings
from shoal.db.session import on_commit
from shoal.runs.metering import session_meter
from shoal.sandboxes.manager import SandboxManager
from shoal.streaming.bus import EventBus
from shoal.worker.broker import Broker

log = structlog.get_logger(__name__)


def run_stream(run_id: uuid.UUID | str) -> str:
    return f"run:{run_id}"


def control_channel(run_id: uuid.UUID | str) -> str:
    return f"run:{run_id}:control"


def thread_channel(thread_id: uuid.UUID | str) -> str:
    return f"thread:{thread_id}:runs"


# What an embedded start awaits once it has written the first events of a run it claimed.
Completion = Callable[[], Awaitable[None]]


@dataclass
class Runtime:
    settings: Settings
    session_factory: async_sessionmaker[AsyncSession]
    bus: EventBus
    broker: Broker
    sandboxes: SandboxManager = field(default=None)  # type: ignore[assignment]
    """Project sandboxes (built from settings unless given; the provider itself is built on
    first use, so processes that never touch a sandbox need no sandbox support)."""
    claim_at_start: Callable[[AsyncSession, uuid.UUID], Awaitable[Completion | None]] | None = None
    """Embedded: this process's worker claims a new run inside the start's transaction (None:
    not claimed, wake it). Call it before locking the thread's row; await the completion once
    the run's first events are written."""

    def __post_init__(self) -> None:
        self.use_sandboxes(self.sandboxes or SandboxManager(self.settings, self.session_factory))

    def use_sandboxes(self, manager: SandboxManager) -> None:
        """Project sandboxes through ``manager``, their background sessions metered."""
        if manager.meter is None:
            manager.meter = session_meter(self.settings, self.session_factory)
        self.sandboxes = manager

    async def publish(self, run_id: uuid.UUID, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            await self.bus.publish(run_stream(run_id), event)

    async def wake(self, run_ids: Iterable[uuid.UUID]) -> None:
        for run_id in run_ids:
            await self.broker.wake(str(run_id))

    def after_commit_publish(
        self, session: AsyncSession, run_id: uuid.UUID, events: list[dict[str, Any]]
    ) -> None:
        async def _publish() -> None:
            await self.publish(run_id, events)

        on_commit(session, _publish)

    def after_commit_wake(self, session: AsyncSession, run_ids: list[uuid.UUID]) -> None:
        async def _wake() -> None:
            await self.wake(run_ids)

        if run_ids:
            on_commit(session, _wake)

    def after_commit_signal(self, session: AsyncSession, channel: str, message: str) -> None:
        async def _signal() -> None:
            await self.bus.signal(channel, message)

        on_commit(session, _signal)
