"""Structured logging: JSON when not a terminal, secrets never written.

Context (``run_id``, ``thread_id``, ``account_id``, ``attempt``, ``request_id``) is bound with
structlog's contextvars and appears on every line logged within that context.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:token|access_token|refresh_token|api_key|apikey|key)=)[^&\s\"]*"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_API_KEY = re.compile(r"shoal_sk_[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    """Remove tokens, API keys and secret query values from a string."""
    text = _SECRET_QUERY.sub(r"\1[redacted]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    return _API_KEY.sub("shoal_sk_[redacted]", text)


_SECRET_KEYS = frozenset({"password", "token", "secret", "authorization", "api_key", "x-api-key"})


def _redact_value(key: str, value: Any) -> Any:
    if key.lower() in _SECRET_KEYS:
        return "[redacted]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):  # e.g. headers or an error object bound as one field
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def _redact_processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if key != "_record":  # the stdlib record itself (foreign lines) is not rendered
            event[key] = _redact_value(key, value)
    return event


def configure_logging(*, level: str = "INFO", json: bool | None = None) -> None:
    use_json = (not sys.stderr.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=renderer, foreign_pre_chain=shared)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    noisy_loggers = (
        "uvicorn.access",
        "LiteLLM",
        "litellm",
        "httpx",
        "pika",
        "dramatiq",
        "langfuse",
    )
    for noisy in noisy_loggers:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # uvicorn's access line holds the raw URL (``?token=``): ours (app.py) is the redacted one.
    logging.getLogger("uvicorn.access").disabled = True
