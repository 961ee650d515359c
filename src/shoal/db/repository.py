"""RepositoryBase and keyset pagination shared by every repository."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from shoal.kit.pagination import TimeCursor

T = TypeVar("T")


class RepositoryBase:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


async def newest_first(
    session: AsyncSession,
    query: Select[T],
    *,
    created_at: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[uuid.UUID],
    limit: int,
    cursor: str | None,
) -> Page[T]:
    """One page of ``query`` ordered newest → oldest by ``(created_at, id)``.

    Fetches ``limit + 1`` rows to know whether another page exists; the cursor names the last
    row returned, so inserts between pages neither repeat nor skip rows.
    """
    if cursor is not None:
        after = TimeCursor.decode(cursor)
        query = query.where(
            or_(
                created_at < after.created_at,
                and_(created_at == after.created_at, ident < after.id),
            )
        )
    query = query.order_by(created_at.desc(), ident.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars().all())
    if len(rows) <= limit:
        return Page(rows, None)
    last = rows[limit - 1]
    key: Callable[[Any], Any] = lambda row: getattr(row, ident.key)  # noqa: E731
    return Page(rows[:limit], TimeCursor(getattr(last, created_at.key), key(last)).encode())
