"""RunHost: everything a process needs to accept or execute runs, started and stopped as one.

The API process always has a bus, a broker and the runtime. Without ``SHOAL_BROKER_URL`` it also
hosts the worker and the sweeper (embedded mode: wake-ups are direct calls). ``shoal worker``
hosts the worker and sweeper next to a Dramatiq consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shoal.config import Settings
from shoal.db.engine import read_factory
from shoal.llm.base import ChatModel
from shoal.llm.factory import build_chat_model
from shoal.observability.tracing import Tracer, create_tracer
from shoal.runs.repository import RunRepository
from shoal.runs.runtime import Runtime
from shoal.runs.sweeper import Sweeper
from shoal.runs.worker import RunWorker, new_worker_id
from shoal.streaming.bus import EventBus
from shoal.streaming.factory import create_bus
from shoal.worker.broker import Broker, DramatiqBroker, InProcessBroker

log = structlog.get_logger(__name__)


@dataclass
class RunHost:
    runtime: Runtime
    worker: RunWorker | None = None
    sweeper: Sweeper | None = None
    tracer: Tracer | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        execute: bool,
        chat_model: ChatModel | None = None,
        bus: EventBus | None = None,
        broker: Broker | None = None,
        kind: str = "embedded",
    ) -> RunHost:
        bus = bus or create_bus(settings)
        if broker is None:
            broker = (
                DramatiqBroker(settings.broker_url) if settings.broker_url else InProcessBroker()
            )
        runtime = Runtime(settings, session_factory, bus, broker)
        host = cls(runtime)
        if execute:
            worker_id = new_worker_id(kind)
            host.tracer = create_tracer(settings)  # None without Langfuse keys
            host.worker = RunWorker(
                runtime,
                chat_model or build_chat_model(settings),
                worker_id=worker_id,
                tracer=host.tracer,
            )
            host.sweeper = Sweeper(runtime, worker_id=worker_id)
            if isinstance(broker, InProcessBroker):
                broker.bind(host.worker.wake)
                runtime.claim_at_start = host.worker.claim_at_start
        return host

    async def start(self) -> None:
        if self.worker is None or self.sweeper is None:
            return
        if isinstance(self.runtime.broker, InProcessBroker):
            # Embedded: this process held every run; any still running died with its last life.
            failed = await self.sweeper.fail_lapsed(orphans_of=self.worker.worker_id)
            if failed:
                log.warning("orphaned_runs_failed", count=failed)
        self._tasks.append(asyncio.create_task(self.sweeper.run_forever(), name="sweeper"))
        self._tasks.append(asyncio.create_task(self._alive(), name="worker-alive"))

    async def _alive(self) -> None:
        assert self.worker is not None
        interval = self.runtime.settings.run_heartbeat_seconds
        while True:
            with contextlib.suppress(Exception):
                await self.runtime.bus.heartbeat(self.worker.worker_id, ttl_seconds=interval * 3)
            await asyncio.sleep(interval)

    async def stop(self, *, drain_timeout: float | None = None) -> None:
        timeout = (
            self.runtime.settings.drain_timeout_seconds if drain_timeout is None else drain_timeout
        )
        if self.worker is not None:
            await self.worker.drain(timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        await self.runtime.broker.close()
        await self.runtime.bus.close()
        if self.tracer is not None:
            await self.tracer.aclose()  # bounded by SHOAL_TRACING_FLUSH_TIMEOUT_SECONDS

    async def queue_depth(self) -> int:
        """Queued runs across all processes (``shoal_queue_depth``, read at scrape time)."""
        async with read_factory(self.runtime.session_factory)() as session:
            return await RunRepository(session).count_queued()

    async def readiness(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {}
        try:
            out["bus"] = await asyncio.wait_for(self.runtime.bus.ping(), 3)
        except Exception:
            out["bus"] = "unavailable"
        try:
            out["broker"] = await asyncio.wait_for(self.runtime.broker.ping(), 3)
        except Exception:
            out["broker"] = "unavailable"
        try:
            out["workers_alive"] = await asyncio.wait_for(self.runtime.bus.live_workers(), 3)
        except Exception:
            out["workers_alive"] = 0
        return out
