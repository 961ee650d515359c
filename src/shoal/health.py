"""Liveness and readiness.

``/api/health`` answers while the process serves. ``/api/health/ready`` answers 503 only when
the database is unreachable; a missing bus, broker or worker makes it ``degraded`` (still 200)
so a load balancer keeps serving reads while an operator fixes the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shoal.kit.time import utcnow

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]
    timestamp: datetime
    version: str


class Readiness(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    components: dict[str, str | int]


@router.get("/health")
async def health() -> Health:
    """Liveness: the process is up."""
    from shoal import __version__

    return Health(status="ok", timestamp=utcnow(), version=__version__)


async def _db_ok(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(3):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: 503 only when the database is down; otherwise ok or degraded."""
    components: dict[str, str | int] = {}
    db_ok = await _db_ok(request.app.state.engine)
    components["db"] = "ok" if db_ok else "unavailable"
    provider: Callable[[], Awaitable[dict[str, str | int]]] | None = getattr(
        request.app.state, "readiness", None
    )
    if provider is not None:
        components.update(await provider())
    degraded = (
        any(
            value not in ("ok", "embedded")
            for key, value in components.items()
            if key != "workers_alive"
        )
        or components.get("workers_alive") == 0
    )
    status = "unavailable" if not db_ok else ("degraded" if degraded else "ok")
    body = Readiness(status=status, components=components)
    return JSONResponse(body.model_dump(), status_code=503 if not db_ok else 200)
