"""Engine events (DESIGN §3). The engine emits ``(type, data)``; the sink adds seq/run ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

MESSAGE: Final = "message"
TEXT_DELTA: Final = "text_delta"
REASONING_DELTA: Final = "reasoning_delta"
TOOL_CALL: Final = "tool_call"
TOOL_STARTED: Final = "tool_started"
TOOL_OUTPUT_DELTA: Final = "tool_output_delta"
TOOL_RESULT: Final = "tool_result"
USAGE: Final = "usage"
ERROR: Final = "error"

ENGINE_EVENT_TYPES: Final = frozenset(
    {
        MESSAGE,
        TEXT_DELTA,
        REASONING_DELTA,
        TOOL_CALL,
        TOOL_STARTED,
        TOOL_OUTPUT_DELTA,
        TOOL_RESULT,
        USAGE,
        ERROR,
    }
)

# ``error`` event codes the engine emits (all non-fatal)
LLM_RETRY: Final = "llm_retry"
COST_UNKNOWN: Final = "cost_unknown"
CONTEXT_SUMMARY_FAILED: Final = "context_summary_failed"


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
