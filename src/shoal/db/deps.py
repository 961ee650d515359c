"""Request-scoped session: commits before the response is sent (durable acceptance)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shoal.db.session import commit, rollback


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await rollback(session)
            raise
        else:
            await commit(session)


SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


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
