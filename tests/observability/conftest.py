"""Observability test helpers: the app behind a real uvicorn (as ``shoal serve`` runs it, but
with uvicorn's own access log left on), and JSON logs captured from stderr."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog
from fastapi import FastAPI

from shoal.observability.logging import configure_logging
from tests.support import serve_app

JsonLogs = Callable[[], tuple[str, list[dict[str, Any]]]]


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` (lifespan already running) on a free port; uvicorn's access log is on, as it is
    by default — our logging setup must keep it quiet, since it writes raw URLs."""
    async with serve_app(app, access_log=True) as address:
        yield f"http://{address}"


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonLogs]:
    """Production logging (JSON to stderr, here a buffer); returns (raw text, parsed lines)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    access = logging.getLogger("uvicorn.access")
    saved_access = (access.disabled, access.level)
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging(level="INFO", json=True)

    def read() -> tuple[str, list[dict[str, Any]]]:
        text = buffer.getvalue()
        return text, [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    yield read
    structlog.reset_defaults()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    access.disabled = saved_access[0]
    access.setLevel(saved_access[1])
