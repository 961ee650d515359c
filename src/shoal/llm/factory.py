"""Choosing the backend for a model name: ``shoal/demo`` → the demo model, else LiteLLM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shoal.llm.base import ChatModel
from shoal.llm.demo import DEMO_MODEL, DemoChatModel
from shoal.llm.litellm_adapter import LiteLLMChatModel
from shoal.llm.types import ChatRequest, Chunk, Usage

if TYPE_CHECKING:
    from shoal.config import Settings


class ModelRouter:
    """A ``ChatModel`` that sends each request to the backend owning its model name."""

    def __init__(self, default: ChatModel, routes: Mapping[str, ChatModel] | None = None) -> None:
        self.default = default
        self.routes = dict(routes or {})

    def backend(self, model: str) -> ChatModel:
        return self.routes.get(model, self.default)

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        return self.backend(request.model).stream(request)

    def count_tokens(self, model: str, messages: Sequence[Mapping[str, Any]]) -> int:
        return self.backend(model).count_tokens(model, messages)

    def context_window(self, model: str) -> int:
        return self.backend(model).context_window(model)

    def estimate_usage(
        self, model: str, messages: Sequence[Mapping[str, Any]], completion: str
    ) -> Usage:
        return self.backend(model).estimate_usage(model, messages, completion)


def build_chat_model(settings: Settings, **litellm_overrides: Any) -> ModelRouter:
    """The run worker's model: LiteLLM for every model, except ``shoal/demo`` (offline).

    ``litellm_overrides`` are passed to :class:`LiteLLMChatModel` (e.g. ``api_base``).
    """
    litellm_model = LiteLLMChatModel.from_settings(settings, **litellm_overrides)
    return ModelRouter(litellm_model, {DEMO_MODEL: DemoChatModel()})
