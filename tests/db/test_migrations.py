"""The Alembic migrations produce exactly the schema the models declare, on both backends."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import shoal.db.models  # noqa: F401
from shoal.db.base import Base
from shoal.db.engine import create_engine


def _diff(connection: Any) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert diff == []
    assert set(Base.metadata.tables) <= tables


async def test_every_foreign_key_column_is_indexed_or_leads_an_index() -> None:
    """Every list query and cascade has an index (FK columns lead an index or the PK)."""
    missing = []
    for table in Base.metadata.sorted_tables:
        leading = {next(c.name for c in index.columns) for index in table.indexes}
        leading |= {next(iter(table.primary_key.columns)).name}
        leading |= {
            next(iter(u.columns)).name
            for u in table.constraints
            if u.__class__.__name__ == "UniqueConstraint" and len(u.columns)
        }
        for fk in table.foreign_keys:
            if fk.parent.name not in leading:
                missing.append(f"{table.name}.{fk.parent.name}")
    assert missing == []
