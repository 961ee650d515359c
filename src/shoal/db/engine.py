"""Async engine construction from a plain URL.

Users write ``sqlite:///path`` or ``postgresql://…`` (including Supabase URLs and its 6543
transaction pooler); the driver is chosen here. Behind a transaction pooler prepared
statements cannot be cached, so asyncpg's statement caches are turned off.

SQLite allows one writer at a time. Every write transaction starts with ``BEGIN IMMEDIATE``
(the lock up front, never a failed upgrade), and this process's writers queue for the single
write connection in the pool — a FIFO hand-off the moment the previous commit ends — instead
of polling inside SQLite's busy handler (sleeps of up to 100 ms while holding a connection).
Read-only work (stream replays, auth lookups, history loads) goes to a second engine whose
transactions are deferred snapshots with ``query_only`` on: in WAL mode they never wait for
the writer, and the writer never waits for them. On Postgres both are the same pool.

Both SQLite engines run SQLite on the event loop's thread (:class:`_InlineConnection`), not on
aiosqlite's worker threads: a page-cached statement takes microseconds, less than the thread
hand-off, and a transaction no longer yields between its statements — under load it holds the
write lock for its own work only, not for a turn of a busy event loop per statement.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
import weakref
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_

if TYPE_CHECKING:
    from shoal.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Read engines of SQLite write engines (disposed with them).
_READ_ENGINES: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


def async_url(url: str) -> URL:
    """Normalise a user-facing database URL to its async driver URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        query = dict(parsed.query)
        # asyncpg speaks `ssl`, not libpq's `sslmode`.
        sslmode = query.pop("sslmode", None)
        if sslmode is not None and "ssl" not in query:
            query["ssl"] = sslmode
        for libpq_only in ("pgbouncer", "options", "connect_timeout", "application_name"):
            query.pop(libpq_only, None)
        return parsed.set(drivername="postgresql+asyncpg", query=query)
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


def sync_url(url: str) -> URL:
    """The same database for synchronous tools (none in the hot path)."""
    return async_url(url)


def uses_transaction_pooler(url: str) -> bool:
    parsed = make_url(url)
    return parsed.port == 6543 or parsed.query.get("pgbouncer") in ("true", "1")


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int | None = None,
    settings: Settings | None = None,
) -> AsyncEngine:
    """The process's engine. ``settings`` sizes the pools (``SHOAL_DB_POOL_SIZE``,
    ``SHOAL_DB_MAX_OVERFLOW``, ``SHOAL_DB_POOL_TIMEOUT_SECONDS``)."""
    size = pool_size or (settings.db_pool_size if settings is not None else 10)
    overflow = settings.db_max_overflow if settings is not None else 20
    timeout = settings.db_pool_timeout_seconds if settings is not None else 30.0
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        return _sqlite_engine(target, echo=echo, size=size, overflow=overflow, timeout=timeout)
    connect_args: dict[str, Any] = {}
    if uses_transaction_pooler(url):
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
    return create_async_engine(
        target,
        echo=echo,
        connect_args=connect_args,
        pool_size=size,
        max_overflow=overflow,
        pool_timeout=timeout,
        pool_pre_ping=True,
    )


def _sqlite_engine(
    target: URL, *, echo: bool, size: int, overflow: int, timeout: float
) -> AsyncEngine:
    database = target.database or ""
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    if database in ("", ":memory:"):  # one private database per connection: no read engine
        engine = create_async_engine(
            target, echo=echo, connect_args=connect_args, poolclass=NullPool
        )
        _configure_sqlite(engine, read_only=False)
        return engine
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    # One write connection: writers queue here, in order, rather than in SQLite's busy handler.
    engine = create_async_engine(
        target,
        echo=echo,
        pool_size=1,
        max_overflow=0,
        pool_timeout=timeout,
        async_creator=functools.partial(_inline_connection, database),
    )
    _configure_sqlite(engine, read_only=False, inline=True)
    reader = create_async_engine(
        target,
        echo=echo,
        pool_size=size,
        max_overflow=overflow,
        pool_timeout=timeout,
        async_creator=functools.partial(_inline_connection, database),
    )
    _configure_sqlite(reader, read_only=True, inline=True)
    _READ_ENGINES[engine] = reader

    @event.listens_for(engine.sync_engine, "engine_disposed")
    def _dispose_reader(_engine: Any) -> None:
        # Runs inside the write engine's (greenlet-bridged) dispose.
        reader.sync_engine.dispose()

    return engine


def _configure_sqlite(engine: AsyncEngine, *, read_only: bool, inline: bool = False) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # aiosqlite opens in the default "deferred" mode; we issue BEGIN ourselves (below)
        # so that a write transaction takes the lock up front (no SQLITE_BUSY upgrades).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # An inline writer must not sleep in SQLite's busy handler (that would stop the event
        # loop): it fails at once and _on_begin retries with asyncio sleeps.
        busy_ms = 0 if inline and not read_only else SQLITE_BUSY_TIMEOUT_MS
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if read_only or not inline:
            conn.exec_driver_sql(begin)
            return
        # The write lock is held by another process (a CLI command) or engine: wait for it
        # without blocking the event loop, up to the usual busy timeout.
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        delay = 0.001
        while True:
            try:
                conn.exec_driver_sql(begin)
                return
            except OperationalError as exc:
                if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                    raise
            await_(asyncio.sleep(delay))
            delay = min(0.05, delay * 2)


class _Inline:
    """aiosqlite's request queue, answered at once on the caller's (the event loop's) thread."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class _InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection without its thread: each call runs SQLite directly.

    Nothing here waits for a lock: reads in WAL mode never do, and the writer takes its lock in
    ``_on_begin`` with asyncio sleeps between tries. What remains is page-cached SQLite work,
    cheaper than the hand-off to a worker thread and back (which also contends for the GIL
    with the loop: up to the 5 ms switch interval per statement when the loop is busy)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _Inline()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> _InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, _InlineConnection]:
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


async def _inline_connection(database: str) -> _InlineConnection:
    def connect() -> sqlite3.Connection:
        return sqlite3.connect(
            database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )

    return await _InlineConnection(connect)


class Sessions(async_sessionmaker[AsyncSession]):
    """The write session factory; :attr:`read` opens sessions for read-only work."""

    read: async_sessionmaker[AsyncSession]


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    factory = Sessions(engine, expire_on_commit=False, autoflush=False)
    reader = _READ_ENGINES.get(engine)
    factory.read = (
        factory
        if reader is None
        else async_sessionmaker(reader, expire_on_commit=False, autoflush=False)
    )
    return factory


def saturated(exc: BaseException) -> bool:
    """The database is overloaded, not broken: no pooled connection came free within
    ``SHOAL_DB_POOL_TIMEOUT_SECONDS``, or SQLite's lock stayed held past its busy timeout
    (another process writing)."""
    return isinstance(exc, PoolTimeout) or (
        isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)
    )


def read_factory(factory: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions for work that only reads (the same factory where reads need no separate
    engine). A write through one fails on SQLite ("attempt to write a readonly database")."""
    read: async_sessionmaker[AsyncSession] | None = getattr(factory, "read", None)
    return read if read is not None else factory
