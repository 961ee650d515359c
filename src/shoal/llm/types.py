"""Typed chunks of a streamed chat completion and the request that produces them.

Messages are OpenAI chat-format dicts; tools are OpenAI function schemas. Everything here is
plain data so the engine, the fakes and the LiteLLM adapter share one vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from shoal.errors import ShoalError

Message: TypeAlias = dict[str, Any]
ReasoningEffort: TypeAlias = Literal["low", "medium", "high"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One model call. ``tools`` is ``None`` when no native tools are offered."""

    model: str
    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] | None = None
    enable_thinking: bool = False
    reasoning_effort: ReasoningEffort | None = None
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingBlockDelta:
    """A fragment of a provider thinking block (Anthropic): merged by ``merge_thinking_blocks``."""

    block: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a native tool call; fragments of one call share ``index``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost of one call.

    ``estimated``: tokens were counted locally (the provider sent none).
    ``cost_known``: false when the model is not in LiteLLM's price map (``cost_usd`` is 0).
    """

    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    estimated: bool = False
    cost_known: bool = True


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """A transient provider error that will be retried after ``delay_seconds``."""

    code: str
    message: str
    attempt: int
    delay_seconds: float


Chunk: TypeAlias = (
    TextDelta | ReasoningDelta | ThinkingBlockDelta | ToolCallDelta | Finish | Usage | RetryNotice
)


class LLMError(ShoalError):
    """The model call failed for good (after retries, or a non-retryable provider error)."""

    status = 502
    code = "llm_error"

    def __init__(self, message: str, *, provider_status: int | None = None) -> None:
        super().__init__(message)
        self.provider_status = provider_status


@dataclass(slots=True)
class _BlockAcc:
    block: dict[str, Any] = field(default_factory=dict)


def merge_thinking_blocks(deltas: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Merge streamed thinking-block fragments into whole blocks, in order.

    Fragments of one block share ``index`` (``thinking`` text is concatenated, the
    ``signature`` arrives last); ``redacted_thinking`` blocks are kept as they are.
    """
    order: list[tuple[str, object]] = []
    blocks: dict[tuple[str, object], _BlockAcc] = {}
    for position, delta in enumerate(deltas):
        kind = str(delta.get("type", "thinking"))
        index = delta.get("index", position if kind != "thinking" else 0)
        key = (kind, index)
        if key not in blocks:
            blocks[key] = _BlockAcc({"type": kind})
            order.append(key)
        acc = blocks[key].block
        for name, value in delta.items():
            if name in ("index", "type") or value is None:
                continue
            if name == "thinking" and isinstance(value, str):
                acc["thinking"] = str(acc.get("thinking", "")) + value
            elif value != "" or name not in acc:
                acc[name] = value
    return [blocks[key].block for key in order]
