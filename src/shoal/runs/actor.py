"""``shoal worker``: the Dramatiq actor ``run_agent_background`` and its process.

The actor does not run the agent on a Dramatiq thread: it hands the run id to this process's
asyncio executor (which holds hundreds of runs while they wait on the LLM) and returns. When
the executor is full the actor waits for a slot, so RabbitMQ's prefetch stops sending this
process more work and other workers take it. The run row, not the message, is the truth: a
message lost with a crashed worker is recovered by the sweeper.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import structlog

from shoal.config import Settings
from shoal.db.engine import create_engine, session_factory
from shoal.llm.base import ChatModel
from shoal.observability.metrics_server import MetricsServer
from shoal.runs.host import RunHost
from shoal.worker.broker import RUN_ACTOR, RUN_QUEUE, DramatiqBroker, make_dramatiq_broker
from shoal.worker.executor import LoopThread

log = structlog.get_logger(__name__)


def declare_actor(broker: Any, host: RunHost, loop: LoopThread) -> Any:
    """Declare ``run_agent_background(agent_run_id)`` on ``broker``, bound to ``host``."""
    import dramatiq

    def run_agent_background(agent_run_id: str) -> None:
        assert host.worker is not None
        loop.run(host.worker.wake(agent_run_id)).result()

    # No max_retries: the broker has no Retries middleware, so nothing is retried (the sweeper
    # owns recovery) and Dramatiq rejects the option as undefined.
    decorate = dramatiq.actor(actor_name=RUN_ACTOR, queue_name=RUN_QUEUE, broker=broker)
    return decorate(run_agent_background)


def serve_worker(
    settings: Settings, *, threads: int = 8, chat_model: ChatModel | None = None
) -> None:
    """Run a worker process until SIGTERM/SIGINT, then drain (DESIGN.md §2)."""
    import dramatiq

    if not (settings.broker_url and settings.redis_url):
        raise ValueError("a worker needs SHOAL_BROKER_URL and SHOAL_REDIS_URL")
    broker_url = settings.broker_url
    loop = LoopThread("shoal-runs")
    loop.start()
    broker = make_dramatiq_broker(settings.broker_url)
    engine = create_engine(settings.effective_database_url, settings=settings)

    async def _start() -> RunHost:
        host = RunHost.create(
            settings,
            session_factory(engine),
            execute=True,
            chat_model=chat_model,
            broker=DramatiqBroker(broker_url, broker=broker),
            kind="worker",
        )
        await host.start()
        return host

    host = loop.run(_start()).result()
    declare_actor(broker, host, loop)
    consumer = dramatiq.Worker(broker, queues={RUN_QUEUE}, worker_threads=threads)
    consumer.start()
    assert host.worker is not None
    metrics_server = None
    if settings.worker_metrics_port is not None:
        metrics_server = MetricsServer(
            settings.worker_metrics_host, settings.worker_metrics_port, token=settings.metrics_token
        ).start()
    log.info(
        "worker_started",
        worker_id=host.worker.worker_id,
        threads=threads,
        metrics_port=metrics_server and metrics_server.port,
    )

    stopping = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("worker_draining", signal=signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    stopping.wait()
    consumer.stop(timeout=2_000)  # stop claiming first
    loop.run(host.stop()).result()
    if metrics_server is not None:
        metrics_server.stop()

    async def _dispose() -> None:
        await engine.dispose()

    loop.run(_dispose()).result()
    loop.stop()
    broker.close()
    log.info("worker_stopped")


__all__ = ["declare_actor", "serve_worker"]
