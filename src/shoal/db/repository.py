"""RepositoryBase: a repository holds its session; all SQL lives in repositories."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession


class RepositoryBase:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
