"""``ScriptedChatModel``: a ChatModel fake that replays scripted turns, no HTTP involved."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from shoal.llm.base import approx_text_tokens, approx_tokens, approx_usage
from shoal.llm.types import (
    ChatRequest,
    Chunk,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)


@dataclass
class ScriptedTurn:
    """One scripted answer: text (streamed in ``chunk_size`` pieces), native tool calls as
    ``(name, arguments)`` or ``(name, arguments, id)``, reasoning, and the finish reason
    (default ``tool_calls`` when there are calls, else ``stop``)."""

    text: str = ""
    tool_calls: Sequence[tuple[Any, ...]] = ()
    reasoning: str = ""
    finish_reason: str | None = None
    chunk_size: int = 8
    delay: float = 0.0
    usage: tuple[int, int] | None = None
    extra: list[Chunk] = field(default_factory=list)

    def chunks(self, request: ChatRequest) -> list[Chunk]:
        out: list[Chunk] = list(self.extra)
        if self.reasoning:
            out.append(ReasoningDelta(self.reasoning))
        size = max(1, self.chunk_size)
        out += [TextDelta(self.text[i : i + size]) for i in range(0, len(self.text), size)]
        for index, call in enumerate(self.tool_calls):
            name, arguments = call[0], call[1]
            call_id = call[2] if len(call) > 2 else f"call_{uuid.uuid4().hex[:24]}"
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            half = len(text) // 2
            out.append(ToolCallDelta(index=index, id=call_id, name=name, arguments=text[:half]))
            out.append(ToolCallDelta(index=index, arguments=text[half:]))
        reason = self.finish_reason or ("tool_calls" if self.tool_calls else "stop")
        out.append(Finish(reason))
        prompt, completion = self.usage or (
            approx_tokens(request.messages),
            approx_text_tokens(self.text),
        )
        out.append(Usage(request.model, prompt, completion, 0.0, cost_known=True))
        return out


Script: TypeAlias = (
    ScriptedTurn | Sequence[Chunk] | BaseException | Callable[[ChatRequest], Sequence[Chunk]]
)


class ScriptedChatModel:
    """Replays ``script`` one turn per ``stream`` call and records every request.

    A turn is a :class:`ScriptedTurn`, a list of chunks, an exception to raise, or a callable
    building chunks from the request. When the script runs out it answers ``"done"``.
    """

    def __init__(
        self,
        script: Sequence[Script] = (),
        *,
        context_window: int = 128_000,
        chunk_delay: float = 0.0,
    ) -> None:
        self._script: deque[Script] = deque(script)
        self.requests: list[ChatRequest] = []
        self._window = context_window
        self.chunk_delay = chunk_delay

    def add(self, *turns: Script) -> None:
        self._script.extend(turns)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        turn: Script = self._script.popleft() if self._script else ScriptedTurn(text="done")
        if isinstance(turn, BaseException):
            raise turn
        delay = self.chunk_delay
        if isinstance(turn, ScriptedTurn):
            delay = turn.delay or delay
            chunks: Sequence[Chunk] = turn.chunks(request)
        elif callable(turn):
            chunks = turn(request)
        else:
            chunks = turn
        for chunk in chunks:
            if delay:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            yield chunk

    def count_tokens(self, model: str, messages: Sequence[Mapping[str, Any]]) -> int:
        return approx_tokens(messages)

    def estimate_usage(
        self, model: str, messages: Sequence[Mapping[str, Any]], completion: str
    ) -> Usage:
        return approx_usage(model, messages, completion)

    def context_window(self, model: str) -> int:
        return self._window
