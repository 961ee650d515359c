"""The context manager: keep the prompt inside the model's window.

Past ``threshold`` × the model's window, the oldest turns are summarised by the same model
into a ``summary`` message (stored, announced, auditable; ``metadata.summarized_message_ids``
lists what it replaces). The originals stay in the store; the prompt shows the summary in
their place. A turn is a message plus the tool results that follow it, so an assistant's
``tool_calls`` are never separated from their results. Huge tool outputs are clipped in the
prompt with a marker that names the message id for ``expand_message``.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Sequence
from typing import Any

from shoal.engine import events as ev
from shoal.engine.ports import StoredMessage
from shoal.engine.prompt import build_prompt, visible_messages
from shoal.engine.scope import RunScope
from shoal.engine.types import RunOptions
from shoal.llm.base import ChatModel
from shoal.llm.types import ChatRequest, LLMError, TextDelta, Usage

SUMMARY_INSTRUCTIONS = """\
You compress conversations between a user and an AI agent. Write a faithful summary of the
transcript you are given: the user's goals and instructions, decisions made, facts learned,
files and commands involved with their outcomes, and open tasks. Be specific and concise.
Do not address the user; output only the summary."""
SUMMARY_PREFIX = "[Summary of the earlier conversation]\n"
KEEP_SHARE = 0.5
_WINDOWS: weakref.WeakKeyDictionary[ChatModel, dict[str, int]] = weakref.WeakKeyDictionary()
_TRANSCRIPT_ITEM_CHARS = 4000


class ContextManager:
    def __init__(self, model: ChatModel, scope: RunScope, options: RunOptions) -> None:
        self.model = model
        self.scope = scope
        self.options = options

    async def prepare(self, model_name: str, system_prompt: str) -> list[dict[str, Any]]:
        """The prompt for the next call, summarising first when it is too large.

        Pending images (``see_image``) are attached to the returned prompt but not counted:
        their base64 size says nothing about their token cost.
        """
        clip = self.options.prompt_tool_output_max_chars
        stored = await self.scope.store.list_llm_messages(self.scope.thread_id)
        prompt = build_prompt(system_prompt, stored, clip_chars=clip)
        if self.options.enable_context_manager:
            budget = await self._budget(model_name)
            # Counting tokens costs a tokenizer pass; a prompt whose serialized size is under
            # the budget cannot be over it (a token is at least one byte).
            over = _upper_bound(prompt) > budget and await self._count(model_name, prompt) > budget
            if over and await self.summarise(model_name, stored, budget) is not None:
                stored = await self.scope.store.list_llm_messages(self.scope.thread_id)
                prompt = build_prompt(system_prompt, stored, clip_chars=clip)
        if self.scope.images:
            prompt = build_prompt(system_prompt, stored, clip_chars=clip, images=self.scope.images)
        return prompt

    async def _budget(self, model_name: str) -> int:
        window = self.options.context_window
        if window is None:
            window = await self._window(model_name)
        return int(window * self.options.context_threshold)

    async def _window(self, model_name: str) -> int:
        """The model's context window, looked up once per model object and name."""
        try:
            known = _WINDOWS.setdefault(self.model, {})
        except TypeError:  # not weak-referenceable: ask every time
            return await asyncio.to_thread(self.model.context_window, model_name)
        if model_name not in known:
            known[model_name] = await asyncio.to_thread(self.model.context_window, model_name)
        return known[model_name]

    async def _count(self, model_name: str, messages: Sequence[dict[str, Any]]) -> int:
        return await asyncio.to_thread(self.model.count_tokens, model_name, messages)

    async def summarise(
        self, model_name: str, stored: Sequence[StoredMessage], budget: int
    ) -> StoredMessage | None:
        """Summarise the oldest turns so the newest fit in ``KEEP_SHARE`` of the budget."""
        turns = _turns(visible_messages(stored))
        if len(turns) < 2:
            return None
        keep = await self._turns_to_keep(model_name, turns, int(budget * KEEP_SHARE))
        old = [message for turn in turns[: len(turns) - keep] for message in turn]
        if not old:
            return None
        text = await self._summary_text(model_name, old)
        if not text:
            return None
        ids = [str(m["message_id"]) for m in old]
        return await self.scope.store_message(
            "summary",
            {"role": "system", "content": SUMMARY_PREFIX + text},
            metadata={"summarized_message_ids": ids},
        )

    async def _turns_to_keep(
        self, model_name: str, turns: list[list[StoredMessage]], budget: int
    ) -> int:
        """How many of the newest turns stay verbatim: at least one, never all."""
        keep, used = 0, 0
        for turn in reversed(turns):
            cost = await self._count(model_name, build_prompt("", turn)[1:])
            if keep >= 1 and used + cost > budget:
                break
            used += cost
            keep += 1
        return min(keep, len(turns) - 1)

    async def _summary_text(self, model_name: str, messages: list[StoredMessage]) -> str:
        request = ChatRequest(
            model=model_name,
            messages=[
                {"role": "system", "content": SUMMARY_INSTRUCTIONS},
                {"role": "user", "content": _transcript(messages)},
            ],
        )
        parts: list[str] = []
        try:
            async for chunk in self.model.stream(request):
                if isinstance(chunk, TextDelta):
                    parts.append(chunk.text)
                elif isinstance(chunk, Usage):
                    await self.scope.record_usage(chunk)
        except LLMError as exc:
            await self.scope.error(
                ev.CONTEXT_SUMMARY_FAILED, f"Could not summarise the conversation: {exc.message}"
            )
            return ""
        return "".join(parts).strip()


def _upper_bound(messages: Sequence[dict[str, Any]]) -> int:
    """More tokens than ``messages`` can hold: their UTF-8 JSON size plus a per-message
    allowance for the chat format's framing tokens."""
    size = len(json.dumps(messages, ensure_ascii=False, default=str).encode())
    return size + 16 * len(messages) + 16


def _turns(messages: list[StoredMessage]) -> list[list[StoredMessage]]:
    """Group messages so tool results stay with the message before them."""
    turns: list[list[StoredMessage]] = []
    for message in messages:
        if message.get("type") == "tool" and turns:
            turns[-1].append(message)
        else:
            turns.append([message])
    return turns


def _transcript(messages: list[StoredMessage]) -> str:
    lines = []
    for message in messages:
        content = message.get("content") or {}
        kind = message.get("type", "message")
        body = content.get("content")
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        if content.get("tool_calls"):
            text += "\n[tool calls] " + json.dumps(content["tool_calls"], ensure_ascii=False)
        if kind == "tool":
            kind = f"tool result of {content.get('name', '')}"
        if len(text) > _TRANSCRIPT_ITEM_CHARS:
            text = text[:_TRANSCRIPT_ITEM_CHARS] + " […]"
        lines.append(f"### {kind}\n{text}")
    return "Summarise this conversation:\n\n" + "\n\n".join(lines)
