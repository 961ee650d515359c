"""The agent loop (agentpress), split by phase: prepare → call model → run tools → decide.

    manager = ThreadManager(model=chat_model, store=store, sink=sink, tools=registry)
    result = await manager.run(thread_id, AgentConfig(model="gpt-4o-mini"), RunOptions())

The loop stops when the model answers without tool calls (``stop``), after a terminating tool
(``complete`` / ``ask``), at ``max_iterations``, or when the task is cancelled (the partial
assistant message is stored with ``metadata.interrupted`` and ``CancelledError`` propagates).
A model call that fails for good stores a status message and raises ``LLMError``.
"""

from __future__ import annotations

from typing import Any

from shoal.engine.context import ContextManager
from shoal.engine.ports import EventSink, MessageStore
from shoal.engine.response_processor import ResponseProcessor, TurnOutcome
from shoal.engine.scope import RunScope
from shoal.engine.types import AgentConfig, FinishReason, RunOptions, RunResult
from shoal.llm.base import ChatModel
from shoal.llm.types import ChatRequest, LLMError
from shoal.tools.registry import ToolRegistry

_TERMINATING_REASONS: dict[str, FinishReason] = {"ask": "ask", "complete": "complete"}


class ThreadManager:
    """Runs agent turns on one thread through the engine's ports."""

    def __init__(
        self,
        *,
        model: ChatModel,
        store: MessageStore,
        sink: EventSink,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.model = model
        self.store = store
        self.sink = sink
        self.tools = tools if tools is not None else ToolRegistry()

    async def run(
        self,
        thread_id: str,
        agent: AgentConfig,
        options: RunOptions | None = None,
        *,
        run_id: str | None = None,
        prompt: str | None = None,
        sandbox: Any = None,
    ) -> RunResult:
        """Run the loop until it stops; every step goes to the sink, every message to the store.

        ``prompt`` (optional) is stored as a user message first — the HTTP layer normally
        stores it itself before the run starts. ``sandbox`` is handed to tools as
        ``ToolContext.sandbox``.
        """
        options = options or RunOptions()
        scope = RunScope(thread_id, self.store, self.sink, run_id=run_id, sandbox=sandbox)
        registry = self.tools.select(agent.tools)
        if prompt is not None:
            await scope.store_message("user", {"role": "user", "content": prompt})
        result = RunResult(finish_reason="max_iterations", usage=scope.totals)
        context = ContextManager(self.model, scope, options)
        processor = ResponseProcessor(self.model, registry, scope, options)
        while result.iterations < options.max_iterations:
            result.iterations += 1
            request = await self._prepare(context, agent, options, registry)
            scope.images.clear()  # an image from see_image goes to the next call only
            outcome = await self._call_model(processor, scope, request)
            if outcome.message is not None:
                result.last_message_id = str(outcome.message["message_id"])
            reason = self._decide(outcome)
            if reason is not None:
                result.finish_reason = reason
                return result
        await scope.store_message(
            "status",
            {
                "role": "system",
                "content": f"Stopped after reaching max_iterations ({options.max_iterations}).",
            },
            is_llm_message=False,
            metadata={"finish_reason": "max_iterations"},
        )
        return result

    # -- phases ---------------------------------------------------------------------------------
    async def _prepare(
        self,
        context: ContextManager,
        agent: AgentConfig,
        options: RunOptions,
        registry: ToolRegistry,
    ) -> ChatRequest:
        system = agent.system_prompt
        if options.xml_tool_calling and len(registry):
            system = f"{system}\n\n{registry.xml_instructions()}"
        messages = await context.prepare(agent.model, system)
        offer_native = options.native_tool_calling and len(registry) > 0
        return ChatRequest(
            model=agent.model,
            messages=messages,
            tools=registry.openai_schemas() if offer_native else None,
            enable_thinking=options.enable_thinking,
            reasoning_effort=options.reasoning_effort,
            max_tokens=options.max_tokens,
        )

    async def _call_model(
        self, processor: ResponseProcessor, scope: RunScope, request: ChatRequest
    ) -> TurnOutcome:
        try:
            return await processor.process(request)
        except LLMError as exc:
            await scope.store_message(
                "status",
                {"role": "system", "content": f"The model call failed: {exc.message}"},
                is_llm_message=False,
                metadata={"error": {"code": exc.code, "message": exc.message}},
            )
            raise

    @staticmethod
    def _decide(outcome: TurnOutcome) -> FinishReason | None:
        if outcome.terminating_tool is not None:
            return _TERMINATING_REASONS.get(outcome.terminating_tool, "complete")
        if not outcome.executed:
            return "stop"
        return None
