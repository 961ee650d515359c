"""Fixtures of the end-to-end tests: per module a fresh Postgres database, a private Redis, the
fake LLM and a factory of clusters (``shoal serve`` + ``shoal worker`` subprocesses) that are
always torn down, with their log tails attached to any failing test's report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from shoal.db.migrate import upgrade
from tests.conftest import POSTGRES_ADMIN_URL, service_unavailable
from tests.e2e.harness import (
    RABBITMQ_URLS,
    RUN_QUEUE,
    Cluster,
    Database,
    PrivateRedis,
    RoutedLLM,
    pick_rabbitmq,
    purge_run_queue,
    queue_consumers,
    queue_state,
)
from tests.sandbox.conftest import unmount_under

_ACTIVE: list[Cluster] = []
ClusterFactory = Callable[..., Cluster]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.services)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and _ACTIVE:
        try:
            ready, consumers = queue_state(_ACTIVE[-1].broker_admin_url)
            queue = f"{RUN_QUEUE}: {ready} messages ready, {consumers} consumers"
        except Exception as exc:
            queue = f"{RUN_QUEUE}: unknown ({exc!r})"
        for cluster in _ACTIVE:
            report.sections.append(
                (f"shoal processes of {cluster.name}", f"{queue}\n{cluster.tails()}")
            )


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def e2e_database_url() -> Iterator[str]:
    """A fresh, migrated Postgres database for this module's processes."""
    name = f"shoal_e2e_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        service_unavailable(f"Postgres at {POSTGRES_ADMIN_URL}: {exc}")
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def db(e2e_database_url: str) -> Database:
    return Database(e2e_database_url)


@pytest.fixture(scope="module")
def rabbitmq() -> str:
    """A reachable RabbitMQ vhost whose run queue is empty and has no consumer of another
    process (it would take this module's wake-ups)."""
    try:
        url = pick_rabbitmq()
        purge_run_queue(url)
        consumers = queue_consumers(url)
        deadline = time.monotonic() + 10
        while consumers and time.monotonic() < deadline:  # a just-stopped worker may linger
            time.sleep(0.5)
            consumers = queue_consumers(url)
    except Exception as exc:
        service_unavailable(f"RabbitMQ at {' or '.join(RABBITMQ_URLS)}: {exc!r}")
    if consumers:
        pytest.fail(
            f"{consumers} other consumer(s) on {RUN_QUEUE} at {url} would take this suite's "
            "wake-ups; stop them or point SHOAL_TEST_RABBITMQ_URL at a vhost of its own",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A redis-server of this module only: a unique key space, and safe to restart."""
    if shutil.which("redis-server") is None:
        service_unavailable("redis-server is not installed")
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[RoutedLLM]:
    server = RoutedLLM()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def make_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    e2e_database_url: str,
    rabbitmq: str,
    private_redis: PrivateRedis,
    fake_llm: RoutedLLM,
) -> Iterator[ClusterFactory]:
    """``make_cluster(serves=2, workers=2, broker_url=…, overrides={…})`` starts the processes
    and waits until every serve is ready and sees every worker; all are stopped at module end."""
    clusters: list[Cluster] = []
    roots: list[Path] = []

    def make(
        *,
        serves: int = 2,
        workers: int = 2,
        broker_url: str | None = None,
        overrides: dict[str, str] | None = None,
        wait_consumers: bool = True,
        name: str = "cluster",
    ) -> Cluster:
        cluster = Cluster(
            name=name,
            workdir=_workdir(name, roots),
            database_url=e2e_database_url,
            redis_url=private_redis.url,
            broker_url=broker_url or rabbitmq,
            llm_url=fake_llm.url,
            broker_admin_url=rabbitmq,
            overrides=overrides or {},
        )
        clusters.append(cluster)
        _ACTIVE.append(cluster)
        # Start everything at once: the imports dominate start-up and overlap.
        for _ in range(serves):
            cluster.add_serve()
        for _ in range(workers):
            cluster.add_worker()
        try:
            cluster.wait_ready()
            if wait_consumers:
                cluster.wait_consumers()
            cluster.signup()
        except BaseException:
            print(cluster.tails())
            raise
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()
            with contextlib.suppress(ValueError):
                _ACTIVE.remove(cluster)
        for root in roots:
            unmount_under(root)
            shutil.rmtree(root, ignore_errors=True)


def _workdir(name: str, roots: list[Path]) -> Path:
    """The cluster's directory (its data dir: database keys, sandbox workspaces) under /var/tmp:
    the sandboxes' own uids must be able to traverse it (pytest's tmp dirs are root-only)."""
    root = Path(tempfile.mkdtemp(prefix=f"shoal-e2e-{name}-", dir="/var/tmp"))
    os.chmod(root, 0o711)
    roots.append(root)
    return root


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        yield client
