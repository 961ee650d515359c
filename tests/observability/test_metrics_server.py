"""The worker's /metrics endpoint (``SHOAL_WORKER_METRICS_PORT``)."""

from __future__ import annotations

import httpx

from shoal.observability import metrics
from shoal.observability.metrics_server import MetricsServer


def test_worker_metrics_endpoint_serves_the_registry_behind_the_token() -> None:
    server = MetricsServer("127.0.0.1", 0, token="s3cret").start()
    try:
        metrics.SANDBOX_EXEC_SECONDS.observe(0.25)
        url = f"http://127.0.0.1:{server.port}/metrics"
        assert httpx.get(url, timeout=10).status_code == 401
        assert (
            httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
        )
        ok = httpx.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert ok.status_code == 200
        assert "shoal_sandbox_exec_seconds_count" in ok.text
        assert "shoal_runs_total" in ok.text
        assert httpx.get(url.replace("/metrics", "/other"), timeout=10).status_code == 404
    finally:
        server.stop()
