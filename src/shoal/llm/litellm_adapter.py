"""The LiteLLM adapter: the only module that imports ``litellm``.

LiteLLM takes seconds to import, so it is imported lazily (off the event loop for streaming
calls) and always offline: ``LITELLM_OFFLINE_MODE`` and ``LITELLM_LOCAL_MODEL_COST_MAP`` are set
before the import so it never fetches its price map from the network.

Provider credentials come from the environment exactly as LiteLLM reads them
(``OPENAI_API_KEY``, ``OPENAI_API_BASE``, ``ANTHROPIC_API_KEY``, …); ``api_base``/``api_key``
given to the constructor override them (tests point them at the fake server).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from shoal.llm.base import DEFAULT_CONTEXT_WINDOW, approx_text_tokens, approx_tokens
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
)

if TYPE_CHECKING:
    from shoal.config import Settings

_THINKING_BUDGET = {"low": 1024, "medium": 4096, "high": 16384}
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
_import_lock = threading.Lock()
_module: ModuleType | None = None


def load_litellm() -> ModuleType:
    """Import LiteLLM once, offline. Blocking: call it from a thread when on the event loop."""
    global _module
    if _module is not None:
        return _module
    with _import_lock:
        if _module is None:
            os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm  # noqa: TID251 - this is the adapter

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            _module = litellm
    return _module


async def aload_litellm() -> ModuleType:
    """Import LiteLLM without blocking the event loop (a worker may call this at start-up)."""
    if _module is not None:
        return _module
    return await asyncio.to_thread(load_litellm)


class LiteLLMChatModel:
    """``ChatModel`` over ``litellm.acompletion(stream=True)`` with retries and cost."""

    def __init__(
        self,
        *,
        aliases: Mapping[str, str] | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        max_retries: int = 3,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 30.0,
        timeout: float = 600.0,
        default_context_window: int = DEFAULT_CONTEXT_WINDOW,
    ) -> None:
        self.aliases = dict(aliases or {})
        self.api_base = api_base
        self.api_key = api_key
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.timeout = timeout
        self.default_context_window = default_context_window

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> LiteLLMChatModel:
        params: dict[str, Any] = {
            "aliases": settings.llm_model_aliases,
            "max_retries": settings.llm_max_retries,
            "retry_base_delay": settings.llm_retry_base_delay_seconds,
            "retry_max_delay": settings.llm_retry_max_delay_seconds,
            "timeout": settings.llm_timeout_seconds,
            "default_context_window": settings.llm_default_context_window,
        }
        params.update(overrides)
        return cls(**params)

    def resolve_model(self, model: str) -> str:
        """Follow aliases (at most a few hops, so a cycle cannot hang)."""
        for _ in range(5):
            if model not in self.aliases:
                break
            model = self.aliases[model]
        return model

    # -- streaming ------------------------------------------------------------------------------
    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        litellm = await aload_litellm()
        model = self.resolve_model(request.model)
        kwargs = self._kwargs(request, model)
        attempt = 0
        while True:
            try:
                response = await litellm.acompletion(**kwargs)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retryable, status = classify_error(litellm, exc)
                if not retryable or attempt >= self.max_retries:
                    raise _final_error(exc, status, attempt + 1, retryable) from exc
                notice = self._retry_notice(exc, status, attempt + 1)
            attempt += 1
            yield notice  # only before any output: a retry never repeats streamed text
            await asyncio.sleep(notice.delay_seconds)
        async for chunk in self._translate(litellm, response, model, request):
            yield chunk

    def _retry_notice(self, exc: BaseException, status: int | None, attempt: int) -> RetryNotice:
        delay = min(self.retry_max_delay, self.retry_base_delay * 2 ** (attempt - 1))
        return RetryNotice(
            code="llm_retry",
            message=f"{_describe(exc, status)}; retrying in {delay:.2f} s "
            f"(attempt {attempt} of {self.max_retries})",
            attempt=attempt,
            delay_seconds=delay,
        )

    def _kwargs(self, request: ChatRequest, model: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": [dict(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": self.timeout,
            "max_retries": 0,
            "drop_params": True,
        }
        if request.tools:
            kwargs["tools"] = [dict(t) for t in request.tools]
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if request.enable_thinking:
            effort = request.reasoning_effort or "low"
            if _is_anthropic(model):
                kwargs["thinking"] = {"type": "enabled", "budget_tokens": _THINKING_BUDGET[effort]}
            else:
                kwargs["reasoning_effort"] = effort
        return kwargs

    async def _translate(
        self, litellm: ModuleType, response: Any, model: str, request: ChatRequest
    ) -> AsyncIterator[Chunk]:
        usage: Any = None
        finish: str | None = None
        completion_text: list[str] = []
        try:
            async for chunk in response:
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in getattr(chunk, "choices", None) or ():
                    for out in _delta_chunks(choice.delta, completion_text):
                        yield out
                    if choice.finish_reason:
                        finish = str(choice.finish_reason)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            _, status = classify_error(litellm, exc)
            raise LLMError(
                f"The model stream broke off: {_describe(exc, status)}", provider_status=status
            ) from exc
        finally:
            close = getattr(response, "aclose", None)
            if close is not None:  # hang up on the provider now, also when cancelled
                with contextlib.suppress(Exception):
                    await close()
        yield Finish(finish or "stop")
        yield self._usage(litellm, usage, model, request, "".join(completion_text))

    def _usage(
        self, litellm: ModuleType, usage: Any, model: str, request: ChatRequest, completion: str
    ) -> Usage:
        if usage is None:
            return self.estimate_usage(model, request.messages, completion)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        return _priced(litellm, model, prompt_tokens, completion_tokens, estimated=False)

    def estimate_usage(
        self, model: str, messages: Sequence[Mapping[str, Any]], completion: str
    ) -> Usage:
        """Tokens counted with LiteLLM's token counter, priced, marked ``estimated``."""
        litellm = load_litellm()
        model = self.resolve_model(model)
        prompt_tokens = self.count_tokens(model, messages)
        try:
            completion_tokens = int(litellm.token_counter(model=model, text=completion))
        except Exception:
            completion_tokens = approx_text_tokens(completion)
        return _priced(litellm, model, prompt_tokens, completion_tokens, estimated=True)

    # -- sizing ---------------------------------------------------------------------------------
    def count_tokens(self, model: str, messages: Sequence[Mapping[str, Any]]) -> int:
        litellm = load_litellm()
        try:
            return int(
                litellm.token_counter(
                    model=self.resolve_model(model), messages=[dict(m) for m in messages]
                )
            )
        except Exception:
            return approx_tokens(messages)

    def context_window(self, model: str) -> int:
        litellm = load_litellm()
        try:
            info = litellm.get_model_info(self.resolve_model(model))
        except Exception:
            return self.default_context_window
        window = info.get("max_input_tokens") or info.get("max_tokens")
        return int(window) if window else self.default_context_window


_UNPRICED: set[str] = set()
"""Models LiteLLM has no price for: its failed lookup (fuzzy matching, provider guessing) costs
milliseconds per call, so it is done once per model and process (bounded)."""


def _priced(
    litellm: ModuleType, model: str, prompt_tokens: int, completion_tokens: int, *, estimated: bool
) -> Usage:
    """Usage with LiteLLM's price; an unknown model costs 0 with ``cost_known=False``."""
    cost, known = 0.0, False
    if model not in _UNPRICED:
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
            cost, known = float(prompt_cost) + float(completion_cost), True
        except Exception:
            if len(_UNPRICED) < 1024:
                _UNPRICED.add(model)
    return Usage(
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost,
        estimated=estimated,
        cost_known=known,
    )


def _delta_chunks(delta: Any, completion_text: list[str]) -> list[Chunk]:
    if delta is None:
        return []
    out: list[Chunk] = []
    reasoning = getattr(delta, "reasoning_content", None)
    if reasoning:
        out.append(ReasoningDelta(str(reasoning)))
    for block in getattr(delta, "thinking_blocks", None) or ():
        out.append(ThinkingBlockDelta(dict(block)))
    content = getattr(delta, "content", None)
    if content:
        completion_text.append(str(content))
        out.append(TextDelta(str(content)))
    for call in getattr(delta, "tool_calls", None) or ():
        function = getattr(call, "function", None)
        arguments = getattr(function, "arguments", None) or ""
        completion_text.append(arguments)
        out.append(
            ToolCallDelta(
                index=int(getattr(call, "index", 0) or 0),
                id=getattr(call, "id", None) or None,
                name=getattr(function, "name", None) or None,
                arguments=arguments,
            )
        )
    return out


def classify_error(litellm: ModuleType, exc: BaseException) -> tuple[bool, int | None]:
    """``(retryable, provider status)``: 429, 408/409/425, 5xx and connection errors retry."""
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    if isinstance(exc, litellm.Timeout | litellm.APIConnectionError):
        return True, status
    if isinstance(exc, ConnectionError | TimeoutError):
        return True, status
    if status is None:
        return False, None
    return status in _TRANSIENT_STATUS or status >= 500, status


def _describe(exc: BaseException, status: int | None) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 400:
        text = text[:400] + "…"
    label = f"{status} " if status else ""
    return f"LLM provider error ({label}{type(exc).__name__}): {text}"


def _final_error(
    exc: BaseException, status: int | None, attempts: int, retryable: bool
) -> LLMError:
    if retryable:
        message = f"The model call failed after {attempts} attempts. {_describe(exc, status)}"
    else:
        message = f"The model provider rejected the request. {_describe(exc, status)}"
    return LLMError(message, provider_status=status)


def _is_anthropic(model: str) -> bool:
    lowered = model.lower()
    return lowered.startswith(("anthropic/", "bedrock/anthropic", "vertex_ai/claude")) or (
        "claude" in lowered and "/" not in lowered
    )
