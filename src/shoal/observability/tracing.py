"""Langfuse tracing behind a small facade — the only module that imports ``langfuse``.

Tracing must never cost a run anything: every call here is synchronous and in memory (the SDK
queues finished spans; a background thread of OpenTelemetry's batch processor exports them as
OTLP/HTTP to ``{LANGFUSE_HOST}/api/public/otel/v1/traces``), and every call swallows its own
failures. A slow or absent Langfuse therefore only ever delays that background thread. Shutdown
flushes what is queued in a daemon thread, waiting at most ``SHOAL_TRACING_FLUSH_TIMEOUT_SECONDS``
(the SDK's ``flush()`` has no deadline of its own).

Without ``LANGFUSE_PUBLIC_KEY``/``LANGFUSE_SECRET_KEY`` :func:`create_tracer` returns ``None``
and ``langfuse`` is never imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

import structlog

from shoal.config import Settings

if TYPE_CHECKING:
    from langfuse import Langfuse
    from opentelemetry.sdk.trace import TracerProvider

log = structlog.get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
Level = Literal["DEBUG", "DEFAULT", "WARNING", "ERROR"]


def _quiet(default: Any = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Tracing failures are logged, never raised into the run."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except Exception:
                log.warning("tracing_call_failed", call=func.__name__, exc_info=True)
                return default  # type: ignore[no-any-return]

        return wrapper

    return decorate


class Observation:
    """One Langfuse observation (the run's root span, a generation or a tool span)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.ended = False

    @property
    def trace_id(self) -> str | None:
        return getattr(self._handle, "trace_id", None)

    @_quiet()
    def child(
        self,
        name: str,
        *,
        as_type: Literal["span", "generation", "tool"] = "span",
        input: Any = None,
        metadata: Mapping[str, Any] | None = None,
        model: str | None = None,
        model_parameters: Mapping[str, Any] | None = None,
    ) -> Observation | None:
        kwargs: dict[str, Any] = {"name": name, "as_type": as_type, "input": input}
        if metadata:
            kwargs["metadata"] = dict(metadata)
        if as_type == "generation":
            kwargs["model"] = model
            kwargs["model_parameters"] = dict(model_parameters or {}) or None
        return Observation(self._handle.start_observation(**kwargs))

    @_quiet()
    def update(
        self,
        *,
        output: Any = None,
        metadata: Mapping[str, Any] | None = None,
        level: Level | None = None,
        status_message: str | None = None,
        completion_start_time: datetime | None = None,
        usage_details: Mapping[str, int] | None = None,
        cost_details: Mapping[str, float] | None = None,
        model: str | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "output": output,
            "metadata": dict(metadata) if metadata else None,
            "level": level,
            "status_message": status_message,
            "completion_start_time": completion_start_time,
            "usage_details": dict(usage_details) if usage_details else None,
            "cost_details": dict(cost_details) if cost_details else None,
            "model": model,
        }
        self._handle.update(**{k: v for k, v in values.items() if v is not None})

    @_quiet()
    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self._handle.end()


class Tracer:
    """Owns the Langfuse client and its own OpenTelemetry provider (the process-global provider
    is left alone, so shoal's traces never mix with other instrumentation)."""

    def __init__(
        self,
        *,
        public_key: str,
        secret_key: str,
        host: str | None,
        flush_timeout_seconds: float,
        environment: str | None = None,
    ) -> None:
        from langfuse import Langfuse
        from opentelemetry.sdk.trace import TracerProvider

        self.public_key = public_key
        self.flush_timeout_seconds = flush_timeout_seconds
        # No atexit hook of its own: shutdown is ours, bounded (an unbounded flush at exit
        # would hold the process when Langfuse hangs).
        self._provider: TracerProvider = TracerProvider(shutdown_on_exit=False)
        self._client: Langfuse = Langfuse(
            public_key=public_key,
            secret_key=secret_key,
            base_url=(host or "https://cloud.langfuse.com").rstrip("/"),
            environment=environment,
            tracer_provider=self._provider,
        )
        self._closed = False

    @_quiet()
    def start_trace(
        self,
        name: str,
        *,
        trace_seed: str,
        session_id: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        input: Any = None,
    ) -> Observation | None:
        """Open the root observation of a new trace. The trace id is derived from
        ``trace_seed`` (the run id), so a run's trace can be found from the run alone."""
        from langfuse import propagate_attributes

        trace_id = trace_id_for(trace_seed)
        with propagate_attributes(
            trace_name=name,
            session_id=session_id,
            user_id=user_id,
            metadata=dict(metadata or {}),
        ):
            handle = self._client.start_observation(
                trace_context={"trace_id": trace_id},
                name=name,
                as_type="agent",
                input=input,
                metadata=dict(metadata or {}),
            )
        return Observation(handle)

    def _shutdown_blocking(self) -> None:
        try:
            self._client.shutdown()  # flush: export everything queued
            self._provider.shutdown()  # stop the batch processor's thread
        except Exception:
            log.warning("tracing_shutdown_failed", exc_info=True)

    async def aclose(self) -> bool:
        """Flush and stop, waiting at most the flush timeout. True when everything was sent
        in time; otherwise the rest is dropped (the flush thread is a daemon: it never holds
        the process)."""
        if self._closed:
            return True
        self._closed = True
        _forget_client(self.public_key)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def _run() -> None:
            try:
                self._shutdown_blocking()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(done.set)

        threading.Thread(target=_run, name="shoal-tracing-flush", daemon=True).start()
        try:
            await asyncio.wait_for(done.wait(), self.flush_timeout_seconds)
        except TimeoutError:
            log.warning("tracing_flush_timeout", timeout_seconds=self.flush_timeout_seconds)
            return False
        return True


def _forget_client(public_key: str) -> None:
    """The SDK keeps one client state per public key for the process's life; drop ours once it
    is shut down, so a later app in the same process (tests, restarts) starts fresh instead of
    reusing a stopped exporter."""
    try:
        from langfuse._client.resource_manager import LangfuseResourceManager

        LangfuseResourceManager._instances.pop(public_key, None)
    except Exception:  # the private layout changed: at worst a restart reuses the old state
        log.debug("tracing_forget_failed", exc_info=True)


def trace_id_for(seed: str) -> str:
    """The Langfuse trace id of a run (``seed``: the run id) — how to find a run's trace."""
    from langfuse import Langfuse

    return str(Langfuse.create_trace_id(seed=seed))


def create_tracer(settings: Settings) -> Tracer | None:
    """A tracer when Langfuse keys are set, else ``None`` (tracing off, langfuse not loaded)."""
    if not (settings.langfuse_public_key and settings.langfuse_secret_key):
        return None
    try:
        return Tracer(
            public_key=settings.langfuse_public_key,
            secret_key=settings.langfuse_secret_key,
            host=settings.langfuse_host,
            flush_timeout_seconds=settings.tracing_flush_timeout_seconds,
            environment=settings.env,
        )
    except Exception:
        log.warning("tracing_unavailable", exc_info=True)
        return None
