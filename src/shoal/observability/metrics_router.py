"""``GET /metrics``: Prometheus text exposition (DESIGN.md §8).

Open by default, as scrapers expect; with ``SHOAL_METRICS_TOKEN`` set it needs
``Authorization: Bearer <token>``. Kept apart from :mod:`shoal.observability.metrics` so code
that only records metrics (sandboxes, the engine's edges) never imports the web framework.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter, Request, Response

from shoal.errors import Unauthorized
from shoal.observability import metrics

log = structlog.get_logger(__name__)
router = APIRouter()


def _authorized(header: str | None, token: str) -> bool:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request) -> Response:
    """Every shoal metric of this process; ``shoal_queue_depth`` is counted in the database
    now, so any replica reports the cluster's queue."""
    token = request.app.state.settings.metrics_token
    if token and not _authorized(request.headers.get("authorization"), token):
        raise Unauthorized("GET /metrics needs Authorization: Bearer <SHOAL_METRICS_TOKEN>.")
    queue_depth: Callable[[], Awaitable[int]] | None = getattr(
        request.app.state, "queue_depth", None
    )
    if queue_depth is not None:
        try:
            metrics.QUEUE_DEPTH.set(await queue_depth())
        except Exception:  # a scrape still answers; the gauge keeps its last value
            log.warning("queue_depth_unavailable", exc_info=True)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
