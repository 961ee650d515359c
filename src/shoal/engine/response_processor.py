"""Consuming one model response: stream events, detect tool calls, run them, store the turn.

One *turn* is one assistant message: a model call, plus its continuations when the model
stopped at ``finish_reason == "length"`` (the partial text is sent back as a trailing
assistant message and the continuation streams into the same ``message_id``).

Order of effects: the ``message_id`` exists before the first ``text_delta``; each call's
``tool_call`` event when it is complete in the stream (then, with ``execute_on_stream``, it
starts at once); after the stream the assistant message is stored, the remaining calls run,
and the tool messages are stored in call order. A cancelled or failed stream stores the
partial assistant message (``metadata.interrupted`` or ``metadata.error``) and re-raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from shoal.engine import events as ev
from shoal.engine.ports import StoredMessage, new_message_id
from shoal.engine.scope import RunScope
from shoal.engine.tool_runner import ExecutedCall, PendingCall, ToolRunner
from shoal.engine.types import RunOptions
from shoal.engine.xml_parser import XmlToolCall, XmlToolCallParser, new_call_id
from shoal.llm.base import ChatModel
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
from shoal.tools.base import ToolResult
from shoal.tools.registry import ToolRegistry

STOPPED_RESULT = "The run was stopped before this tool call finished."


@dataclass(slots=True)
class _NativeCall:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)
    done: bool = False


@dataclass(slots=True)
class _Turn:
    message_id: str
    runner: ToolRunner
    parser: XmlToolCallParser | None
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    thinking: list[dict[str, Any]] = field(default_factory=list)
    native: dict[int, _NativeCall] = field(default_factory=dict)
    calls: list[PendingCall] = field(default_factory=list)
    finish_reason: str = "stop"
    continuations: int = 0
    usage_seen: bool = False
    stored: StoredMessage | None = None
    stored_results: set[str] = field(default_factory=set)

    @property
    def full_text(self) -> str:
        return "".join(self.text)


@dataclass(slots=True)
class TurnOutcome:
    message: StoredMessage | None
    executed: list[ExecutedCall]
    finish_reason: str
    terminating_tool: str | None = None

    @property
    def tool_calls(self) -> list[PendingCall]:
        return [item.call for item in self.executed]


class ResponseProcessor:
    def __init__(
        self, model: ChatModel, registry: ToolRegistry, scope: RunScope, options: RunOptions
    ) -> None:
        self.model = model
        self.registry = registry
        self.scope = scope
        self.options = options

    async def process(self, request: ChatRequest) -> TurnOutcome:
        turn = _Turn(
            message_id=new_message_id(),
            runner=ToolRunner(self.registry, self.scope, parallel=self.options.parallel_tools),
            parser=XmlToolCallParser() if self.options.xml_tool_calling else None,
        )
        current = request
        try:
            while True:
                turn.usage_seen = False
                await self._consume(self.model.stream(current), turn)
                if not self._should_continue(turn):
                    break
                turn.continuations += 1
                partial = {"role": "assistant", "content": turn.full_text}
                current = replace(request, messages=[*request.messages, partial])
            await self._flush_calls(turn)
            turn.stored = await self._store_assistant(turn, {})
            if not self.options.execute_on_stream:
                for call in turn.calls:
                    turn.runner.submit(call)
            executed = await turn.runner.results()
            await self._store_results(turn, executed)
        except asyncio.CancelledError:
            await self._abort(turn, current, {"interrupted": True}, estimate=True)
            raise
        except LLMError as exc:
            await self._abort(turn, current, {"error": exc.message}, estimate=False)
            raise
        except Exception as exc:  # keep the partial output of any other failure too
            await self._abort(
                turn, current, {"error": f"{type(exc).__name__}: {exc}"}, estimate=False
            )
            raise
        return TurnOutcome(
            message=turn.stored,
            executed=executed,
            finish_reason=turn.finish_reason,
            terminating_tool=self._terminating(executed),
        )

    def _should_continue(self, turn: _Turn) -> bool:
        return (
            turn.finish_reason == "length"
            and not turn.native
            and turn.continuations < self.options.max_auto_continues
        )

    def _terminating(self, executed: list[ExecutedCall]) -> str | None:
        for item in executed:
            if item.result.success and self.registry.is_terminating(item.call.name):
                return item.call.name
        return None

    # -- streaming ------------------------------------------------------------------------------
    async def _consume(self, stream: AsyncIterator[Chunk], turn: _Turn) -> None:
        try:
            async for chunk in stream:
                await self._on_chunk(chunk, turn)
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:  # release the HTTP stream now, also when cancelled
                with contextlib.suppress(Exception):
                    await close()

    async def _on_chunk(self, chunk: Chunk, turn: _Turn) -> None:
        if isinstance(chunk, TextDelta):
            await self._on_text(chunk.text, turn)
        elif isinstance(chunk, ToolCallDelta):
            await self._on_native(chunk, turn)
        elif isinstance(chunk, ReasoningDelta):
            turn.reasoning.append(chunk.text)
            await self.scope.emit(
                ev.REASONING_DELTA, {"message_id": turn.message_id, "text": chunk.text}
            )
        elif isinstance(chunk, ThinkingBlockDelta):
            turn.thinking.append(chunk.block)
        elif isinstance(chunk, Finish):
            turn.finish_reason = chunk.reason
        elif isinstance(chunk, Usage):
            turn.usage_seen = True
            await self.scope.record_usage(chunk)
        elif isinstance(chunk, RetryNotice):
            await self.scope.error(chunk.code, chunk.message)

    async def _on_text(self, text: str, turn: _Turn) -> None:
        if not text:
            return
        turn.text.append(text)
        await self.scope.emit(ev.TEXT_DELTA, {"message_id": turn.message_id, "text": text})
        if turn.parser is not None:
            for call in turn.parser.feed(text):
                await self._register(turn, _from_xml(call))

    async def _on_native(self, delta: ToolCallDelta, turn: _Turn) -> None:
        acc = turn.native.get(delta.index)
        if acc is None:
            await self._complete_native(turn, below=delta.index)
            acc = turn.native[delta.index] = _NativeCall(delta.index)
        if acc.done:
            return  # a fragment after the call was complete: providers do not interleave
        acc.id = acc.id or delta.id
        acc.name = acc.name or delta.name
        acc.arguments.append(delta.arguments)

    async def _complete_native(self, turn: _Turn, *, below: int | None = None) -> None:
        for index in sorted(turn.native):
            acc = turn.native[index]
            if acc.done or (below is not None and index >= below):
                continue
            acc.done = True
            call = PendingCall(
                id=acc.id or new_call_id(),
                name=acc.name or "",
                arguments="".join(acc.arguments),
                call_format="native",
            )
            if not call.name:
                call.error = "The tool call had no function name, so it was not executed."
            await self._register(turn, call)

    async def _flush_calls(self, turn: _Turn) -> None:
        await self._complete_native(turn)
        if turn.parser is not None:
            for call in turn.parser.finish():
                await self._register(turn, _from_xml(call))

    async def _register(self, turn: _Turn, call: PendingCall) -> None:
        turn.calls.append(call)
        await self.scope.emit(
            ev.TOOL_CALL,
            {"tool_call_id": call.id, "name": call.name, "arguments": _event_arguments(call)},
        )
        if self.options.execute_on_stream:
            turn.runner.submit(call)

    # -- storing --------------------------------------------------------------------------------
    async def _store_assistant(self, turn: _Turn, extra: dict[str, Any]) -> StoredMessage:
        content: dict[str, Any] = {"role": "assistant", "content": turn.full_text}
        native = [c for c in turn.calls if c.call_format == "native"]
        if native:
            content["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": _arguments_text(c.arguments)},
                }
                for c in native
            ]
        metadata: dict[str, Any] = {"finish_reason": turn.finish_reason, **extra}
        if turn.thinking:
            metadata["thinking_blocks"] = merge_thinking_blocks(turn.thinking)
        if turn.reasoning:
            metadata["reasoning_content"] = "".join(turn.reasoning)
        if turn.continuations:
            metadata["continuations"] = turn.continuations
        return await self.scope.store_message(
            "assistant", content, metadata=metadata, message_id=turn.message_id
        )

    async def _store_results(self, turn: _Turn, executed: list[ExecutedCall]) -> None:
        for item in executed:
            if item.call.id in turn.stored_results:
                continue
            turn.stored_results.add(item.call.id)
            content = {
                "role": "tool",
                "tool_call_id": item.call.id,
                "name": item.call.name,
                "content": item.result.output,
            }
            await self.scope.store_message("tool", content, metadata=item.metadata)

    async def _abort(
        self, turn: _Turn, request: ChatRequest, extra: dict[str, Any], *, estimate: bool
    ) -> None:
        """Keep what the interrupted turn produced; never raises over the original error."""
        try:
            finished = turn.runner.finished()
            await turn.runner.cancel()
            has_output = bool(turn.text or turn.calls or turn.reasoning)
            if turn.stored is None and has_output:
                turn.stored = await self._store_assistant(turn, extra)
            if not turn.usage_seen and (estimate or has_output):
                usage = await asyncio.to_thread(
                    self.model.estimate_usage, request.model, request.messages, turn.full_text
                )
                await self.scope.record_usage(usage)
            if turn.stored is None:
                return
            done = {item.call.id for item in finished}
            stopped = [
                ExecutedCall(c, ToolResult.fail(STOPPED_RESULT), {"interrupted": True})
                for c in turn.calls
                if c.id not in done
            ]
            for item in stopped:
                item.metadata.update(
                    success=False, duration_ms=0, call_format=item.call.call_format
                )
            await self._store_results(turn, [*finished, *stopped])
        except Exception:  # the original cancellation/error matters more
            return


def _from_xml(call: XmlToolCall) -> PendingCall:
    return PendingCall(
        id=call.id,
        name=call.name,
        arguments=call.arguments,
        call_format="xml",
        raw_arguments=call.raw_arguments,
        error=call.error,
    )


def _event_arguments(call: PendingCall) -> Any:
    if isinstance(call.arguments, str):
        try:
            return json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            return call.arguments
    return call.arguments


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)
