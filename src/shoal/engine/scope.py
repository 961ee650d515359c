"""Per-run state shared by the phases: ports, usage totals, one-time warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shoal.engine import events as ev
from shoal.engine.ports import EventSink, MessageStore, MessageType, StoredMessage
from shoal.engine.types import UsageTotals
from shoal.llm.types import Usage


@dataclass(slots=True)
class RunScope:
    thread_id: str
    store: MessageStore
    sink: EventSink
    run_id: str | None = None
    sandbox: Any = None
    totals: UsageTotals = field(default_factory=UsageTotals)
    cost_warned: set[str] = field(default_factory=set)
    images: dict[str, dict[str, str]] = field(default_factory=dict)
    """Image payloads (``see_image``) by tool call id, for the next model call only."""

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        await self.sink.emit(type, data)

    async def error(self, code: str, message: str) -> None:
        await self.emit(ev.ERROR, {"code": code, "message": message})

    async def store_message(
        self,
        type: MessageType,
        content: dict[str, Any],
        *,
        is_llm_message: bool = True,
        metadata: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> StoredMessage:
        """Persist a message and announce it with a ``message`` event (the store's job when
        it ``announces_messages``: then both are durable together)."""
        stored = await self.store.add_message(
            self.thread_id,
            type=type,
            content=content,
            is_llm_message=is_llm_message,
            metadata=metadata,
            message_id=message_id,
            agent_run_id=self.run_id,
        )
        if not self.store.announces_messages:
            await self.emit(ev.MESSAGE, {"message": stored})
        return stored

    async def record_usage(self, usage: Usage) -> None:
        """One ``usage`` event per LLM call.

        A model without a known price gets ``cost_usd: 0`` with ``cost_known: false`` on the
        usage event, plus one ``error`` event (code ``cost_unknown``) per model and run, so
        the user sees why the cost reads zero.
        """
        self.totals.add(usage)
        await self.emit(
            ev.USAGE,
            {
                "model": usage.model,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cost_usd": usage.cost_usd,
                "estimated": usage.estimated,
                "cost_known": usage.cost_known,
            },
        )
        if not usage.cost_known and usage.model not in self.cost_warned:
            self.cost_warned.add(usage.model)
            await self.error(
                ev.COST_UNKNOWN,
                f"The price of model {usage.model!r} is unknown; its cost is recorded as 0 USD.",
            )
