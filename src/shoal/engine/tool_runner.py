"""Running one response's tool calls: sequentially or in parallel, as each call completes.

Calls are submitted in stream order. In parallel mode each starts at once; in sequential
mode each waits for the previous one. Results are collected in submission order so the
stored tool messages follow the assistant message's call order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from shoal.engine import events as ev
from shoal.engine.scope import RunScope
from shoal.tools.base import ToolContext, ToolResult
from shoal.tools.builtin.image import IMAGE_PAYLOAD_KEY
from shoal.tools.registry import ToolRegistry

CallFormat = Literal["native", "xml"]


@dataclass(slots=True)
class PendingCall:
    """A tool call as the model made it. ``error`` set: report it, do not execute."""

    id: str
    name: str
    arguments: dict[str, Any] | str
    call_format: CallFormat
    raw_arguments: dict[str, str] | None = None
    error: str | None = None


@dataclass(slots=True)
class ExecutedCall:
    call: PendingCall
    result: ToolResult
    metadata: dict[str, Any] = field(default_factory=dict)


class ToolRunner:
    def __init__(
        self,
        registry: ToolRegistry,
        scope: RunScope,
        *,
        parallel: bool,
        context_factory: Callable[[PendingCall], ToolContext] | None = None,
    ) -> None:
        self.registry = registry
        self.scope = scope
        self.parallel = parallel
        self._context_factory = context_factory or self._default_context
        self._tasks: list[tuple[PendingCall, asyncio.Task[ToolResult]]] = []

    @property
    def submitted(self) -> list[PendingCall]:
        return [call for call, _ in self._tasks]

    def submit(self, call: PendingCall) -> None:
        """Start ``call`` now (parallel) or after the previously submitted one (sequential)."""
        previous = self._tasks[-1][1] if self._tasks and not self.parallel else None
        task = asyncio.create_task(self._run(call, previous), name=f"tool:{call.name}:{call.id}")
        self._tasks.append((call, task))

    async def results(self) -> list[ExecutedCall]:
        """Wait for every submitted call; results in submission order."""
        out: list[ExecutedCall] = []
        for call, task in self._tasks:
            result = await task
            out.append(ExecutedCall(call, result, self._metadata(call, result)))
        return out

    def finished(self) -> list[ExecutedCall]:
        """Results of the calls that already completed (used when a run is interrupted)."""
        out = []
        for call, task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                result = task.result()
                out.append(ExecutedCall(call, result, self._metadata(call, result)))
        return out

    async def cancel(self) -> None:
        for _, task in self._tasks:
            task.cancel()
        for _, task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @staticmethod
    def _metadata(call: PendingCall, result: ToolResult) -> dict[str, Any]:
        return {
            **result.metadata,
            "success": result.success,
            "duration_ms": result.duration_ms,
            "call_format": call.call_format,
        }

    def _keep_image(self, call: PendingCall, result: ToolResult) -> None:
        """Move an image payload out of the result (never stored) into the run's scope."""
        payload = result.metadata.pop(IMAGE_PAYLOAD_KEY, None)
        if isinstance(payload, dict) and result.success:
            self.scope.images[call.id] = payload

    def _default_context(self, call: PendingCall) -> ToolContext:
        scope = self.scope

        async def emit_output(stream: str, text: str) -> None:
            await scope.emit(
                ev.TOOL_OUTPUT_DELTA, {"tool_call_id": call.id, "stream": stream, "text": text}
            )

        return ToolContext(
            thread_id=scope.thread_id,
            tool_call_id=call.id,
            run_id=scope.run_id,
            messages=scope.store,
            emit_output=emit_output,
            sandbox=scope.sandbox,
        )

    async def _run(
        self, call: PendingCall, previous: asyncio.Task[ToolResult] | None
    ) -> ToolResult:
        if previous is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
        await self.scope.emit(ev.TOOL_STARTED, {"tool_call_id": call.id, "name": call.name})
        if call.error is not None:
            result = ToolResult.fail(call.error)
        else:
            result = await self.registry.execute(
                call.name,
                call.arguments,
                self._context_factory(call),
                raw_arguments=call.raw_arguments,
            )
            self._keep_image(call, result)
        await self.scope.emit(
            ev.TOOL_RESULT,
            {
                "tool_call_id": call.id,
                "name": call.name,
                "success": result.success,
                "output": result.output,
                "duration_ms": result.duration_ms,
            },
        )
        return result
