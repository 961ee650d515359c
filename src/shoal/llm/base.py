"""The ``ChatModel`` seam: every model backend (LiteLLM, demo, scripted fake) implements it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from shoal.llm.types import ChatRequest, Chunk, Usage

DEFAULT_CONTEXT_WINDOW = 128_000


@runtime_checkable
class ChatModel(Protocol):
    """A streaming chat model.

    ``stream`` yields typed chunks: text/reasoning deltas, native tool-call fragments, one
    ``Finish`` and one ``Usage`` (last), and ``RetryNotice`` before each retry. It raises
    :class:`~shoal.llm.types.LLMError` when the call fails for good.
    """

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...

    def count_tokens(self, model: str, messages: Sequence[Mapping[str, Any]]) -> int:
        """Prompt tokens of ``messages`` for ``model`` (an estimate is fine)."""
        ...

    def context_window(self, model: str) -> int:
        """Input tokens the model accepts."""
        ...

    def estimate_usage(
        self, model: str, messages: Sequence[Mapping[str, Any]], completion: str
    ) -> Usage:
        """Usage of a call whose stream ended before the provider reported it (``estimated``)."""
        ...


def approx_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """A dependency-free estimate (~4 characters per token) for offline models."""
    chars = 0
    for message in messages:
        content = message.get("content")
        chars += len(content) if isinstance(content, str) else len(json.dumps(content))
        if message.get("tool_calls"):
            chars += len(json.dumps(message["tool_calls"]))
        chars += 16
    return max(1, chars // 4)


def approx_text_tokens(text: str) -> int:
    return max(0, (len(text) + 3) // 4)


def approx_usage(model: str, messages: Sequence[Mapping[str, Any]], completion: str) -> Usage:
    """An estimated, zero-cost usage for offline models."""
    return Usage(
        model=model,
        prompt_tokens=approx_tokens(messages),
        completion_tokens=approx_text_tokens(completion),
        cost_usd=0.0,
        estimated=True,
    )
