"""A shoal to measure: the fake LLM server, the app under uvicorn on 127.0.0.1, a signed-in
client — embedded (SQLite, in-process queue and bus) or on services (Postgres, Redis, RabbitMQ
and a ``shoal worker`` subprocess)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from shoal.kit.threaded_server import serve_here
from shoal.llm.fake_server import FakeLLMServer

FAKE_MODEL = "openai/fake"
FAKE_KEY = "sk-bench"
TERMINAL = ("completed", "failed", "stopped")
POSTGRES_ADMIN_URL = os.environ.get(
    "SHOAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SHOAL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
# A vhost of its own, so no other shoal worker (a test run) takes the benchmark's wake-ups;
# the default vhost is the fallback (see docs/benchmarks.md).
BROKER_URLS = (
    [os.environ["SHOAL_BENCH_BROKER_URL"]]
    if os.environ.get("SHOAL_BENCH_BROKER_URL")
    else [
        "amqp://guest:guest@127.0.0.1:5672/shoal_bench",
        "amqp://guest:guest@127.0.0.1:5672/%2F",
    ]
)

os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _route_uvicorn_logs() -> None:
    """The fake server's uvicorn installs its default logging config (stderr handlers on the
    ``uvicorn.*`` loggers, shared with the app's server); send those records to the root
    logger (the benchmark's log file) instead of over the progress bars."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


class Unavailable(Exception):
    """A service the benchmark needs is not reachable (the part is skipped with a note)."""


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """``app`` (lifespan already entered) on a free 127.0.0.1 port, in this event loop."""
    async with serve_here(app, timeout_graceful_shutdown=2, backlog=4096) as address:
        yield f"http://{address}"


@dataclass
class Stack:
    """A running shoal and a client signed in to it."""

    kind: str
    url: str
    http: httpx.AsyncClient
    fake: FakeLLMServer
    app: Any
    notes: list[str] = field(default_factory=list)

    async def new_thread(self) -> str:
        response = await self.http.post("/api/threads", json={"name": "bench"})
        response.raise_for_status()
        return str(response.json()["thread_id"])

    async def start(self, thread_id: str, prompt: str = "hi") -> str:
        response = await self.http.post(
            f"/api/threads/{thread_id}/agent/start",
            json={"prompt": prompt, "model_name": FAKE_MODEL},
        )
        if response.status_code != 202:
            raise RuntimeError(f"start answered {response.status_code}: {response.text[:300]}")
        return str(response.json()["agent_run_id"])

    @contextlib.asynccontextmanager
    async def stream(self, run_id: str, after: int = 0) -> AsyncIterator[httpx.Response]:
        headers = {"Last-Event-ID": str(after)} if after else {}
        async with self.http.stream(
            "GET", f"/api/agent-run/{run_id}/stream", headers=headers, timeout=120
        ) as response:
            yield response

    async def first_text_delta(self, run_id: str) -> float:
        """``time.perf_counter()`` when the run's first ``text_delta`` arrives."""
        async with self.stream(run_id) as response:
            async for chunk in response.aiter_raw():
                if b"event: text_delta" in chunk:
                    return time.perf_counter()
        raise RuntimeError(f"run {run_id} ended without text")

    async def wait_terminal(self, run_id: str) -> str:
        """Follow the run's stream to its end; its final status."""
        status = "unknown"
        tail = b""
        async with self.stream(run_id) as response:
            if response.status_code == 204:
                return str((await self.http.get(f"/api/agent-run/{run_id}")).json()["status"])
            if response.status_code != 200:
                return f"stream answered {response.status_code}"
            async for chunk in response.aiter_raw():
                tail = (tail + chunk)[-2048:]
        marker = tail.rfind(b"event: run_status\ndata: ")
        if marker >= 0:
            line = tail[marker:].split(b"\n")[1].removeprefix(b"data: ")
            status = str(json.loads(line)["data"]["status"])
        return status


async def _sign_up(http: httpx.AsyncClient) -> None:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    response = await http.post("/auth/v1/signup", json={"email": email, "password": "bench-pw-1"})
    response.raise_for_status()
    http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"


def _client(url: str, max_connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=60)


@contextlib.asynccontextmanager
async def embedded(*, max_connections: int = 200, **settings: Any) -> AsyncIterator[Stack]:
    """``shoal serve`` on embedded defaults (SQLite in a temp dir) with its model on the fake
    LLM server, in this process."""
    from shoal.app import create_app
    from shoal.config import Settings
    from shoal.llm.factory import build_chat_model

    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        async with FakeLLMServer() as fake:
            _route_uvicorn_logs()
            config = Settings(
                data_dir=Path(tmp) / "data",
                database_url=f"sqlite:///{tmp}/shoal.db",
                default_model=FAKE_MODEL,
                max_active_runs_per_account=100_000,
                **settings,
            )
            model = build_chat_model(config, api_base=f"{fake.url}/v1", api_key=FAKE_KEY)
            app = create_app(config, chat_model=model)
            async with (
                app.router.lifespan_context(app),
                serve(app) as url,
                _client(url, max_connections) as http,
            ):
                await _sign_up(http)
                yield Stack("embedded", url, http, fake, app)


def _reachable(url: str, default_port: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1):
            pass
    except OSError as exc:
        raise Unavailable(f"{parts.scheme} at {host}:{port} is not reachable ({exc})") from None


def _run_queue_consumers(url: str) -> int:
    """Consumers already on the run queue at ``url`` (other workers would take our runs)."""
    import pika  # type: ignore[import-untyped]
    import pika.exceptions  # type: ignore[import-untyped]

    from shoal.worker.broker import RUN_QUEUE

    params = pika.URLParameters(url)
    params.socket_timeout = params.blocked_connection_timeout = 3
    params.connection_attempts = 1
    connection = pika.BlockingConnection(params)
    try:
        try:
            declared = connection.channel().queue_declare(queue=RUN_QUEUE, passive=True)
        except pika.exceptions.ChannelClosedByBroker:  # no such queue yet
            return 0
        return int(declared.method.consumer_count)
    finally:
        connection.close()


async def _pick_broker() -> tuple[str, list[str]]:
    notes: list[str] = []
    for url in BROKER_URLS:
        where = urlsplit(url)
        label = f"amqp://{where.hostname}:{where.port or 5672}{where.path or '/'}"
        _reachable(url, 5672)
        try:
            consumers = await asyncio.to_thread(_run_queue_consumers, url)
        except Exception as exc:
            notes.append(f"broker {label} refused: {type(exc).__name__} {exc}".strip())
            continue
        if consumers:
            notes.append(
                f"{consumers} other consumer(s) were on the run queue at {label}: they may take "
                "this benchmark's wake-ups (the sweeper re-wakes those runs after "
                "SHOAL_REQUEUE_SECONDS), inflating the tail"
            )
        elif url != BROKER_URLS[0]:
            notes.append(f"used broker {label}")
        return url, notes
    raise Unavailable("no RabbitMQ vhost accepted the connection: " + "; ".join(notes))


async def _admin(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _wait_worker(
    http: httpx.AsyncClient, worker: asyncio.subprocess.Process, log: Path
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.returncode is not None:
            text = await asyncio.to_thread(log.read_text)
            raise RuntimeError(f"shoal worker exited: {text[-2000:]}")
        ready = (await http.get("/api/health/ready")).json()
        if int(ready["components"].get("workers_alive", 0)) >= 1:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("shoal worker did not report alive within 60 s")


@contextlib.asynccontextmanager
async def services(*, max_connections: int = 200, **settings: Any) -> AsyncIterator[Stack]:
    """The API in this process on Postgres + Redis + RabbitMQ, runs executed by a
    ``shoal worker`` subprocess. Raises Unavailable when a service is not reachable."""
    from shoal.app import create_app
    from shoal.config import Settings
    from shoal.db.migrate import upgrade

    _reachable(POSTGRES_ADMIN_URL, 5432)
    _reachable(REDIS_URL, 6379)
    broker_url, notes = await _pick_broker()
    name = f"shoal_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        await _admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        raise Unavailable(f"cannot create a Postgres database: {exc}") from None
    database_url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    worker: asyncio.subprocess.Process | None = None
    try:
        await asyncio.to_thread(upgrade, database_url)
        with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
            async with FakeLLMServer() as fake:
                _route_uvicorn_logs()
                env = {
                    **os.environ,
                    "SHOAL_DATA_DIR": f"{tmp}/worker",
                    "SHOAL_DATABASE_URL": database_url,
                    "SHOAL_REDIS_URL": REDIS_URL,
                    "SHOAL_BROKER_URL": broker_url,
                    "SHOAL_DEFAULT_MODEL": FAKE_MODEL,
                    "OPENAI_API_BASE": f"{fake.url}/v1",
                    "OPENAI_API_KEY": FAKE_KEY,
                }
                log = Path(tmp) / "worker.log"
                with log.open("wb") as log_file:
                    worker = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "shoal.cli",
                        "worker",
                        env=env,
                        stdout=log_file,
                        stderr=asyncio.subprocess.STDOUT,
                    )
                config = Settings(
                    data_dir=Path(tmp) / "api",
                    database_url=database_url,
                    redis_url=REDIS_URL,
                    broker_url=broker_url,
                    default_model=FAKE_MODEL,
                    max_active_runs_per_account=100_000,
                    **settings,
                )
                app = create_app(config, migrate=False)
                async with (
                    app.router.lifespan_context(app),
                    serve(app) as url,
                    _client(url, max_connections) as http,
                ):
                    await _sign_up(http)
                    await _wait_worker(http, worker, log)
                    yield Stack("services", url, http, fake, app, notes)
                worker.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.wait(), 30)
    finally:
        if worker is not None and worker.returncode is None:
            worker.kill()
            await worker.wait()
        with contextlib.suppress(Exception):
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
