"""Under database load: reads beside a busy writer, and 503 (not 500) when no connection frees.

Issue 5: on SQLite every request used to queue for the write lock, reads included, and a
request that waited past the busy timeout answered 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from shoal.db.engine import read_factory
from shoal.db.models import Thread
from tests.conftest import TestUser


@contextlib.asynccontextmanager
async def _holding_the_writer(app: FastAPI) -> AsyncIterator[AsyncSession]:
    """An open write transaction (SQLite: the write lock and the one write connection)."""
    for _ in range(50):  # background work (the sweeper) may hold it for a moment
        session = app.state.session_factory()
        try:
            await session.execute(text("UPDATE threads SET name = name WHERE 1 = 0"))
        except PoolTimeout:
            await session.close()
            await asyncio.sleep(0.05)
            continue
        try:
            yield session
        finally:
            await session.rollback()
            await session.close()
        return
    raise AssertionError("could not take the write connection")


@pytest.mark.parametrize("backend", ["sqlite"])  # Postgres readers never wait for writers
async def test_reads_answer_while_a_write_transaction_is_open(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser, backend: str
) -> None:
    created = await client.post("/api/threads", json={"name": "t"}, headers=user.headers)
    assert created.status_code == 201, created.text
    async with _holding_the_writer(app):
        # Auth and the run lookup only read: they answer at once, not after the writer.
        response = await asyncio.wait_for(
            client.get(f"/api/agent-run/{uuid.uuid4()}", headers=user.headers), 5
        )
        assert response.status_code == 404, response.text
        async with read_factory(app.state.session_factory)() as reader:
            names = (await reader.execute(select(Thread.name))).scalars().all()
        assert names == ["t"]


@pytest.mark.parametrize("backend", ["sqlite"])  # on Postgres the read factory is the usual one
async def test_read_sessions_cannot_write(app: FastAPI, backend: str) -> None:
    async with read_factory(app.state.session_factory)() as reader:
        with pytest.raises(OperationalError, match="readonly"):
            await reader.execute(text("UPDATE threads SET name = 'x'"))


class TestSaturated:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_seconds": 0.3}

    async def test_a_request_that_gets_no_connection_answers_503_with_retry_after(
        self, app: FastAPI, client: httpx.AsyncClient, user: TestUser
    ) -> None:
        async with _holding_the_writer(app):
            busy = await asyncio.wait_for(
                client.post("/api/threads", json={"name": "t"}, headers=user.headers), 10
            )
        assert busy.status_code == 503, busy.text
        assert busy.json()["code"] == "dependency_unavailable"
        assert int(busy.headers["Retry-After"]) >= 1
        # Nothing half-done is left behind: the retry succeeds.
        retried = await client.post("/api/threads", json={"name": "t"}, headers=user.headers)
        assert retried.status_code == 201, retried.text
