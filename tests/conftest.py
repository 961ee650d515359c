"""Test harness: the app on SQLite and on Postgres, an ASGI client, and small factories.

API tests take the ``client`` fixture and run once per backend (``sqlite``, ``postgres``).
Postgres is a fresh database per test session (migrated once by Alembic), truncated before
every test; SQLite is a copy of a migrated template file per test. Tests needing a service
carry the ``services`` marker: locally they skip with a reason when it is down; with
``SHOAL_TEST_SERVICES=required`` (CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from shoal.accounts.repository import AccountRepository
from shoal.app import create_app
from shoal.auth.tokens import TokenIssuer
from shoal.config import Settings
from shoal.db.base import Base
from shoal.db.migrate import upgrade
from shoal.db.models import AuthSession
from shoal.db.session import unit_of_work
from shoal.llm.base import ChatModel
from shoal.sandbox import SandboxProvider, ScriptedSandbox

POSTGRES_ADMIN_URL = os.environ.get(
    "SHOAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SERVICES_REQUIRED = os.environ.get("SHOAL_TEST_SERVICES") == "required"


def service_unavailable(reason: str) -> None:
    """Skip (locally) or fail (CI, SHOAL_TEST_SERVICES=required) a test needing a service."""
    if SERVICES_REQUIRED:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(f"service unavailable: {reason} (set SHOAL_TEST_SERVICES=required to fail)")


# -- databases ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated Postgres database for this test session."""
    name = f"shoal_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        service_unavailable(f"Postgres at {POSTGRES_ADMIN_URL}: {exc}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate(url: str) -> None:
    """Empty every table (children first). DELETE beats TRUNCATE on tiny tables."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(f'DELETE FROM "{table.name}"')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "shoal.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(_truncate(url))
    return url


# -- app and client ----------------------------------------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its app."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "login_rate_limit": 1000,
        "run_lease_seconds": 3.0,
        "run_heartbeat_seconds": 0.5,
        "sweeper_interval_seconds": 0.5,
        "drain_timeout_seconds": 2.0,
        **settings_overrides,
    }
    return Settings(**values)


@pytest.fixture
def chat_model() -> ChatModel | None:
    """Override to inject a model (e.g. ScriptedChatModel); None: the settings' default."""
    return None


@pytest.fixture
def sandbox_provider() -> SandboxProvider | None:
    """Override to use a real provider (tests/sandboxes); default: the scripted fake, so API
    tests that touch a sandbox start no processes. None: the settings' provider."""
    return ScriptedSandbox()


@pytest.fixture
async def app(
    settings: Settings, chat_model: ChatModel | None, sandbox_provider: SandboxProvider | None
) -> AsyncIterator[FastAPI]:
    application = create_app(
        settings, migrate=False, chat_model=chat_model, sandbox_provider=sandbox_provider
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


# -- factories ---------------------------------------------------------------------------------


@dataclass
class TestUser:
    __test__ = False
    id: uuid.UUID
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def account_id(self) -> uuid.UUID:
        return self.id


async def make_user(
    app: FastAPI, email: str | None = None, password: str | None = None
) -> TestUser:
    """A user with a personal account and a signed-in session (built-in auth)."""
    from shoal.auth.secrets import hash_password

    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    async with unit_of_work(app.state.session_factory) as session:
        user = await AccountRepository(session).create_user(
            email=email, password_hash=hash_password(password) if password else None
        )
        auth_session = AuthSession(user_id=user.id)
        session.add(auth_session)
        await session.flush()
        issuer: TokenIssuer = app.state.token_issuer
        token, _ = issuer.issue(user_id=user.id, email=email, session_id=auth_session.id)
    return TestUser(id=user.id, email=email, token=token)


@pytest.fixture
async def user(app: FastAPI) -> TestUser:
    return await make_user(app)


@pytest.fixture
async def other_user(app: FastAPI) -> TestUser:
    return await make_user(app)
