"""A run's Langfuse trace, derived from what the run already does — the engine knows nothing.

One trace per run (root observation ``agent_run``, metadata run_id/thread_id/account_id/
attempt), one generation per LLM call, one tool span per tool call:

* **Generations** are opened by :class:`TracedChatModel`, a ``ChatModel`` decorator the worker
  hands to the engine: only it knows when a call *starts* (the event log first hears of a call
  at its first token). It records the first-token time and the output; the call's ``usage``
  event (always one per call, also for an estimated, interrupted call) closes it with tokens
  and cost.
* **Tool spans** come from the event log (:meth:`RunTrace.on_event`, an observer of
  ``RunEventLog``): ``tool_call`` gives the arguments, ``tool_started`` opens the span,
  ``tool_result`` closes it with the outcome and a truncated output.

All of it is synchronous bookkeeping on in-memory spans; exporting is the SDK's background
thread's business (see ``shoal.observability.tracing``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from shoal.kit.time import utcnow
from shoal.llm.base import ChatModel
from shoal.llm.types import (
    ChatRequest,
    Chunk,
    LLMError,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from shoal.observability.tracing import Observation, Tracer
from shoal.runs.execute import RunSnapshot

TRACE_NAME = "agent_run"
PROMPT_CLIP = 8_000  # characters per string of a traced prompt
OUTPUT_CLIP = 10_000  # characters of a generation's text
TOOL_OUTPUT_CLIP = 2_000  # characters of a tool result


def clip(value: Any, limit: int) -> Any:
    """``value`` with every string longer than ``limit`` cut (JSON-like data)."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… [{len(value) - limit} more]"
    if isinstance(value, Mapping):
        return {str(k): clip(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clip(v, limit) for v in value]
    return value


class RunTrace:
    """The trace of one claimed attempt of a run."""

    def __init__(self, tracer: Tracer, run: RunSnapshot) -> None:
        self.metadata = {
            "run_id": str(run.id),
            "thread_id": str(run.thread_id),
            "account_id": str(run.account_id),
            "attempt": str(run.attempt),
        }
        self.root = tracer.start_trace(
            TRACE_NAME,
            trace_seed=str(run.id),
            session_id=str(run.thread_id),
            user_id=str(run.account_id),
            metadata={**self.metadata, "model": run.model_name},
        )
        self.generation: Observation | None = None
        self._streaming = False  # the generation's stream is still being read
        self._usage_recorded = False
        self._arguments: dict[str, Any] = {}
        self._tools: dict[str, Observation] = {}

    # -- generations (driven by TracedChatModel) -------------------------------------------------
    def start_generation(self, request: ChatRequest) -> Observation | None:
        self._close_generation()
        if self.root is None:
            return None
        parameters = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "reasoning_effort": request.reasoning_effort,
            "tools": len(request.tools) if request.tools else None,
        }
        self.generation = self.root.child(
            "llm_call",
            as_type="generation",
            model=request.model,
            input=clip(list(request.messages), PROMPT_CLIP),
            model_parameters={k: v for k, v in parameters.items() if v is not None},
            metadata=self.metadata,
        )
        self._streaming, self._usage_recorded = True, False
        return self.generation

    def end_stream(self) -> None:
        """The call's stream is over: close its generation if its usage is known already;
        otherwise the usage event that follows (an estimate, after an interruption) does."""
        self._streaming = False
        if self._usage_recorded:
            self._close_generation()

    def _close_generation(self) -> None:
        if self.generation is not None:
            self.generation.end()
            self.generation = None
        self._streaming = self._usage_recorded = False

    # -- the event log's observer ----------------------------------------------------------------
    def on_event(self, type: str, data: Mapping[str, Any]) -> None:
        if type == "usage":
            self._on_usage(data)
        elif type == "tool_call":
            self._arguments[str(data.get("tool_call_id"))] = data.get("arguments")
        elif type == "tool_started":
            self._on_tool_started(data)
        elif type == "tool_result":
            self._on_tool_result(data)

    def _on_usage(self, data: Mapping[str, Any]) -> None:
        generation = self.generation
        if generation is None:
            return
        prompt = int(data.get("prompt_tokens") or 0)
        completion = int(data.get("completion_tokens") or 0)
        generation.update(
            model=str(data.get("model") or "") or None,
            usage_details={"input": prompt, "output": completion, "total": prompt + completion},
            cost_details={"total": float(data.get("cost_usd") or 0.0)},
            metadata={
                **self.metadata,
                "estimated": bool(data.get("estimated")),
                "cost_known": bool(data.get("cost_known", True)),
            },
        )
        self._usage_recorded = True
        if not self._streaming:
            self._close_generation()

    def _on_tool_started(self, data: Mapping[str, Any]) -> None:
        if self.root is None:
            return
        call_id = str(data.get("tool_call_id"))
        span = self.root.child(
            str(data.get("name") or "tool"),
            as_type="tool",
            input=clip(self._arguments.pop(call_id, None), PROMPT_CLIP),
            metadata={**self.metadata, "tool_call_id": call_id},
        )
        if span is not None:
            self._tools[call_id] = span

    def _on_tool_result(self, data: Mapping[str, Any]) -> None:
        call_id = str(data.get("tool_call_id"))
        span = self._tools.pop(call_id, None)
        if span is None:  # a result without a start (a call refused before running)
            if self.root is None:
                return
            span = self.root.child(
                str(data.get("name") or "tool"),
                as_type="tool",
                input=clip(self._arguments.pop(call_id, None), PROMPT_CLIP),
            )
            if span is None:
                return
        success = bool(data.get("success"))
        span.update(
            output=clip(_text(data.get("output")), TOOL_OUTPUT_CLIP),
            metadata={
                **self.metadata,
                "tool_call_id": call_id,
                "success": success,
                "duration_ms": data.get("duration_ms"),
            },
            level=None if success else "WARNING",
            status_message=None if success else "tool call failed",
        )
        span.end()

    # -- the end ---------------------------------------------------------------------------------
    def finish(
        self, *, status: str, error: Mapping[str, str] | None, finish_reason: str | None
    ) -> None:
        """Close everything still open and the root, with the run's outcome."""
        self._close_generation()
        for span in self._tools.values():
            span.update(level="WARNING", status_message=f"run ended: {status}")
            span.end()
        self._tools.clear()
        if self.root is None:
            return
        self.root.update(
            output={
                "status": status,
                "error": dict(error) if error else None,
                "finish_reason": finish_reason,
            },
            level="ERROR" if status == "failed" else "WARNING" if status == "stopped" else None,
            status_message=error.get("message") if error else None,
        )
        self.root.end()


class TracedChatModel:
    """A ``ChatModel`` that opens a generation per call on a :class:`RunTrace`."""

    def __init__(self, inner: ChatModel, trace: RunTrace) -> None:
        self.inner = inner
        self.trace = trace

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        generation = self.trace.start_generation(request)
        if generation is None:
            async for chunk in self.inner.stream(request):
                yield chunk
            return
        output = _Output()
        outcome: tuple[str, str] | None = ("WARNING", "interrupted")
        try:
            async for chunk in self.inner.stream(request):
                output.add(chunk)
                yield chunk
            outcome = None
        except LLMError as exc:
            outcome = ("ERROR", exc.message)
            raise
        except Exception as exc:
            outcome = ("ERROR", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            generation.update(
                output=output.value(),
                completion_start_time=output.first_token_at,
                level=outcome[0] if outcome else None,  # type: ignore[arg-type]
                status_message=outcome[1] if outcome else None,
            )
            self.trace.end_stream()

    def count_tokens(self, model: str, messages: Sequence[Mapping[str, Any]]) -> int:
        return self.inner.count_tokens(model, messages)

    def context_window(self, model: str) -> int:
        return self.inner.context_window(model)

    def estimate_usage(
        self, model: str, messages: Sequence[Mapping[str, Any]], completion: str
    ) -> Usage:
        return self.inner.estimate_usage(model, messages, completion)


class _Output:
    """What a traced call produced: text, native tool calls, the first-token time."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.first_token_at: datetime | None = None

    def add(self, chunk: Chunk) -> None:
        content = isinstance(chunk, TextDelta | ReasoningDelta | ToolCallDelta)
        if content and self.first_token_at is None:
            self.first_token_at = utcnow()
        if isinstance(chunk, TextDelta):
            self.text.append(chunk.text)
        elif isinstance(chunk, ToolCallDelta):
            call = self.calls.setdefault(chunk.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = call["id"] or (chunk.id or "")
            call["name"] = call["name"] or (chunk.name or "")
            call["arguments"] += chunk.arguments

    def value(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "role": "assistant",
            "content": clip("".join(self.text), OUTPUT_CLIP),
        }
        if self.calls:
            out["tool_calls"] = [clip(self.calls[i], PROMPT_CLIP) for i in sorted(self.calls)]
        return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
