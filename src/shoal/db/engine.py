"""Async engine construction from a plain URL.

Users write ``sqlite:///path`` or ``postgresql://…`` (including Supabase URLs and its 6543
transaction pooler); the driver is chosen here. Behind a transaction pooler prepared
statements cannot be cached, so asyncpg's statement caches are turned off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 10_000


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


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    target = async_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if target.get_backend_name() == "sqlite":
        database = target.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        kwargs["poolclass"] = NullPool if database in ("", ":memory:") else None
        if kwargs["poolclass"] is None:
            del kwargs["poolclass"]
        engine = create_async_engine(target, **kwargs)
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if uses_transaction_pooler(url):
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
    kwargs.update(
        connect_args=connect_args, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )
    return create_async_engine(target, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # aiosqlite opens in the default "deferred" mode; we issue BEGIN ourselves (below)
        # so that a write transaction takes the lock up front (no SQLITE_BUSY upgrades).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
