"""Prometheus metrics (DESIGN.md §8): the names are a contract; no per-account or per-user labels.

The objects live in a dedicated :data:`REGISTRY`, not prometheus_client's global default, so
several apps in one process (tests) never collide on registration. Counters and histograms are
per process — Prometheus sums them across replicas. ``shoal_queue_depth`` is the exception: it
is a fact of the shared database, so the ``/metrics`` route counts queued runs at scrape time
and sets it — correct however many processes there are.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds: from sub-second waits to the default 15 min queue timeout / long agent runs.
_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)
_RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_TTFT_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)
_EXEC_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

RUNS_TOTAL = Counter(
    "shoal_runs",
    "Runs that reached a terminal status, by status.",
    ["status"],
    registry=REGISTRY,
)
for _status in ("completed", "failed", "stopped"):  # present at 0 before the first run ends
    RUNS_TOTAL.labels(_status)
QUEUE_DEPTH = Gauge(
    "shoal_queue_depth",
    "Runs waiting in status queued (read from the database at scrape time).",
    registry=REGISTRY,
)
QUEUE_WAIT_SECONDS = Histogram(
    "shoal_queue_wait_seconds",
    "Time from a run's creation to its claim by a worker.",
    buckets=_WAIT_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_FIRST_TOKEN_SECONDS = Histogram(
    "shoal_time_to_first_token_seconds",
    "Time from a run's claim to its first streamed assistant text.",
    buckets=_TTFT_BUCKETS,
    registry=REGISTRY,
)
RUN_DURATION_SECONDS = Histogram(
    "shoal_run_duration_seconds",
    "Time from a run's start (claim) to its terminal status.",
    buckets=_RUN_BUCKETS,
    registry=REGISTRY,
)
ACTIVE_RUNS = Gauge(
    "shoal_active_runs",
    "Runs executing in this process right now.",
    registry=REGISTRY,
)
LEASE_EXPIRIES_TOTAL = Counter(
    "shoal_lease_expiries",
    "Runs failed by the sweeper because their worker's lease lapsed (worker_lost).",
    registry=REGISTRY,
)
LLM_ERRORS_TOTAL = Counter(
    "shoal_llm_errors",
    "Runs failed by an LLM provider error, by provider.",
    ["provider"],
    registry=REGISTRY,
)
SANDBOX_EXEC_SECONDS = Histogram(
    "shoal_sandbox_exec_seconds",
    "Duration of commands executed in sandboxes.",
    buckets=_EXEC_BUCKETS,
    registry=REGISTRY,
)
SSE_SUBSCRIBERS = Gauge(
    "shoal_sse_subscribers",
    "Open SSE streams (run and thread streams) in this process.",
    registry=REGISTRY,
)


def provider_of(model: str) -> str:
    """The provider label of a model name — its LiteLLM prefix (``anthropic/claude…`` →
    ``anthropic``); bare names are OpenAI's by LiteLLM's convention. Bounded by construction:
    the label is the prefix, never the full (user-chosen) model name."""
    prefix, sep, _ = model.partition("/")
    if not sep:
        lowered = model.lower()
        if lowered.startswith("claude"):
            return "anthropic"
        if lowered.startswith("gemini"):
            return "gemini"
        return "openai"
    cleaned = "".join(c for c in prefix.lower() if c.isalnum() or c in "_-")[:32]
    return cleaned or "unknown"


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
