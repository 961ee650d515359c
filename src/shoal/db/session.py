"""The unit of work at the edges, and the after-commit seam.

Only edges (the HTTP session dependency, actors, CLI commands) open a unit of work; it commits
on success and rolls back on any exception. Work that must only happen once the data is
durable — waking a worker, publishing an event — is registered with :func:`on_commit` and runs
right after the commit; a rollback drops it, so no job ever points at a row that does not exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Callback = Callable[[], Awaitable[None]]
_KEY = "shoal.on_commit"
_UNDO = "shoal.on_rollback"
log = structlog.get_logger(__name__)


def on_commit(session: AsyncSession, callback: Callback) -> None:
    """Run ``callback`` after ``session`` commits; never if it rolls back."""
    session.info.setdefault(_KEY, []).append(callback)


def on_rollback(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` (synchronous, must not fail) if ``session`` rolls back or its commit
    fails: it gives back what the transaction held outside the database (a worker slot)."""
    session.info.setdefault(_UNDO, []).append(callback)


def _undo(session: AsyncSession) -> None:
    session.info.pop(_KEY, None)
    for callback in session.info.pop(_UNDO, []):
        callback()


async def commit(session: AsyncSession) -> None:
    """Commit, then run the after-commit callbacks (their failures are logged, not raised:
    the data is already durable and the sweeper re-sends lost wake-ups)."""
    try:
        await session.commit()
    except BaseException:
        _undo(session)
        raise
    session.info.pop(_UNDO, None)
    callbacks: list[Callback] = session.info.pop(_KEY, [])
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            log.exception("after_commit_callback_failed")


async def rollback(session: AsyncSession) -> None:
    _undo(session)
    await session.rollback()


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Commit on success, roll back on any exception."""
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await rollback(session)
            raise
        else:
            await commit(session)
