"""LLM layer: the ``ChatModel`` seam, typed stream chunks, and the model backends.

Importing this package is cheap: LiteLLM is imported lazily by ``litellm_adapter`` only.
"""

from shoal.llm.base import ChatModel
from shoal.llm.demo import DEMO_MODEL, DemoChatModel
from shoal.llm.factory import ModelRouter, build_chat_model
from shoal.llm.litellm_adapter import LiteLLMChatModel
from shoal.llm.scripted import ScriptedChatModel, ScriptedTurn
from shoal.llm.types import (
    ChatRequest,
    Chunk,
    Finish,
    LLMError,
    ReasoningDelta,
    RetryNotice,
    TextDelta,
    ThinkingBlockDelta,
    ToolCallDelta,
    Usage,
    merge_thinking_blocks,
)

__all__ = [
    "DEMO_MODEL",
    "ChatModel",
    "ChatRequest",
    "Chunk",
    "DemoChatModel",
    "Finish",
    "LLMError",
    "LiteLLMChatModel",
    "ModelRouter",
    "ReasoningDelta",
    "RetryNotice",
    "ScriptedChatModel",
    "ScriptedTurn",
    "TextDelta",
    "ThinkingBlockDelta",
    "ToolCallDelta",
    "Usage",
    "build_chat_model",
    "merge_thinking_blocks",
]
