"""Schemathesis over the whole OpenAPI document, authenticated: no input produces a 5xx.

The app runs under a real uvicorn server (embedded defaults, SQLite in a temp dir) in a
background thread; schemathesis generates requests from `/api/openapi.json` (capped at 25
examples per operation to keep the suite fast) and checks only `not_a_server_error`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings

from shoal.app import create_app
from shoal.config import Settings
from tests.support import free_port


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(Settings(data_dir=data_dir, login_rate_limit=100_000))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fuzz server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def auth_headers(live_url: str) -> dict[str, str]:
    response = httpx.post(
        f"{live_url}/auth/v1/signup",
        json={"email": "fuzz@example.com", "password": "fuzz-password-1"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    # Something to find: a project, a thread, an agent of this user.
    headers = {"Authorization": f"Bearer {token}"}
    httpx.post(f"{live_url}/api/threads", json={"name": "fuzz"}, headers=headers, timeout=10)
    httpx.post(f"{live_url}/api/agents", json={"name": "fuzz"}, headers=headers, timeout=10)
    return headers


@pytest.fixture(scope="module")
def api_schema(live_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_url}/api/openapi.json")


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation, read from the app's OpenAPI document."""
    document = create_app(Settings()).openapi()
    return [
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    ]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_server_errors(
    api_schema: schemathesis.BaseSchema, auth_headers: dict[str, str], method: str, path: str
) -> None:
    operation = api_schema[path][method]
    failures: list[str] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers=auth_headers, timeout=15)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} {case.query or ''} "
                f"→ {response.status_code}: {response.text[:300]}"
            )

    check()
    assert not failures, "\n".join(failures[:5])
