"""Request-scoped sessions: the unit of work commits before the response is sent (durable
acceptance); reads that need no write lock get a session of their own (see db/engine.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shoal.db.engine import read_factory, saturated
from shoal.db.session import commit, rollback
from shoal.errors import DependencyUnavailable

RETRY_AFTER_SECONDS = 1


def unavailable(exc: BaseException) -> DependencyUnavailable | None:
    """A saturated database (no free pooled connection in time, or SQLite's lock held past its
    busy timeout) as 503 with ``Retry-After``: load is not a server bug. None for anything
    else."""
    if saturated(exc):
        return DependencyUnavailable(
            "The database is busy; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return None


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        try:
            yield session
        except BaseException as exc:
            await rollback(session)
            busy = unavailable(exc)
            if busy is not None:
                raise busy from exc
            raise
        else:
            try:
                await commit(session)
            except Exception as exc:
                busy = unavailable(exc)
                if busy is not None:
                    raise busy from exc
                raise


SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


async def _read_session(request: Request, session: SessionDep) -> AsyncIterator[AsyncSession]:
    """A session for lookups only. On SQLite it reads a snapshot beside the writer (never
    waiting for the write lock); elsewhere it is the request's own session."""
    writer: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    factory = read_factory(writer)
    if factory is writer:
        yield session
        return
    async with factory() as reader:
        try:
            yield reader
        except BaseException as exc:
            busy = unavailable(exc)
            if busy is not None:
                raise busy from exc
            raise


ReadSessionDep = Annotated[AsyncSession, Depends(_read_session, scope="function")]


class ListParams:
    """``?limit=`` (1–200, default 50) and ``?cursor=`` (the previous page's next_cursor)."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=200, description="page size (1–200)")] = 50,
        cursor: Annotated[
            str | None, Query(max_length=512, description="next_cursor of the previous page")
        ] = None,
    ) -> None:
        self.limit = limit
        self.cursor = cursor


ListQuery = Annotated[ListParams, Depends()]
