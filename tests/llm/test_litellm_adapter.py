"""The LiteLLM adapter against the fake provider (the real litellm.acompletion path)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shoal.config import Settings
from shoal.llm import build_chat_model
from shoal.llm.fake_server import FakeLLMServer, FakeToolCall, FakeTurn
from shoal.llm.litellm_adapter import LiteLLMChatModel, classify_error, load_litellm
from shoal.llm.types import (
    ChatRequest,
    Chunk,
    Finish,
    LLMError,
    ReasoningDelta,
    RetryNotice,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tests.llm.conftest import FAKE_MODEL

HI = [{"role": "user", "content": "hi"}]


async def collect(chat: LiteLLMChatModel, model: str = FAKE_MODEL, **kwargs: object) -> list[Chunk]:
    request = ChatRequest(model=model, messages=HI, **kwargs)  # type: ignore[arg-type]
    return [chunk async for chunk in chat.stream(request)]


def test_importing_the_llm_package_does_not_import_litellm() -> None:
    code = "import sys, shoal.llm, shoal.engine, shoal.tools; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_stream_translates_chunks(
    fake_llm: FakeLLMServer, litellm_model: LiteLLMChatModel
) -> None:
    fake_llm.script(
        FakeTurn(
            text="Hello world",
            reasoning="thinking hard",
            tool_calls=[FakeToolCall("f", {"x": 1}, "call_f")],
            usage=(11, 7),
        )
    )
    chunks = await collect(litellm_model)
    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    reasoning = "".join(c.text for c in chunks if isinstance(c, ReasoningDelta))
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert text == "Hello world"
    assert reasoning == "thinking hard"
    assert calls[0].id == "call_f" and calls[0].name == "f"
    assert "".join(c.arguments for c in calls) == '{"x": 1}'
    assert chunks[-2] == Finish("tool_calls")
    usage = chunks[-1]
    assert isinstance(usage, Usage)
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 7)
    assert usage.cost_known is False and usage.cost_usd == 0.0 and not usage.estimated
    body = fake_llm.requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_missing_provider_usage_is_counted(
    fake_llm: FakeLLMServer, litellm_model: LiteLLMChatModel
) -> None:
    # LiteLLM counts the tokens itself when a finished stream carried no usage
    fake_llm.script(FakeTurn(text="some words here", include_usage=False))
    usage = (await collect(litellm_model))[-1]
    assert isinstance(usage, Usage) and usage.prompt_tokens > 0 and usage.completion_tokens > 0


async def test_retries_then_gives_up(
    fake_llm: FakeLLMServer, litellm_model: LiteLLMChatModel
) -> None:
    fake_llm.script(FakeTurn.error(503), FakeTurn.error(429), FakeTurn.error(500))
    chunks: list[Chunk] = []
    with pytest.raises(LLMError) as caught:
        async for chunk in litellm_model.stream(ChatRequest(model=FAKE_MODEL, messages=HI)):
            chunks.append(chunk)
    notices = [c for c in chunks if isinstance(c, RetryNotice)]
    assert [n.attempt for n in notices] == [1, 2]
    assert notices[1].delay_seconds >= notices[0].delay_seconds
    assert caught.value.provider_status == 500
    assert len(fake_llm.records) == 3


async def test_aliases_and_thinking_options(
    fake_llm: FakeLLMServer, litellm_model: LiteLLMChatModel
) -> None:
    litellm_model.aliases = {"fast": FAKE_MODEL}
    fake_llm.script(FakeTurn(text="ok"))
    await collect(
        litellm_model, model="fast", enable_thinking=True, reasoning_effort="medium", max_tokens=50
    )
    body = fake_llm.requests[0]
    assert body["model"] == "fake-model"
    assert body["max_tokens"] == 50


def test_anthropic_thinking_parameter() -> None:
    model = LiteLLMChatModel()
    request = ChatRequest(model="anthropic/claude-sonnet-4-5", messages=HI, enable_thinking=True)
    kwargs = model._kwargs(request, request.model)
    assert kwargs["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert "reasoning_effort" not in kwargs
    other = model._kwargs(ChatRequest(model="o3", messages=HI, enable_thinking=True), "o3")
    assert other["reasoning_effort"] == "low"


def test_sizing_helpers() -> None:
    model = LiteLLMChatModel(default_context_window=4321)
    assert model.context_window("gpt-4o-mini") >= 100_000
    assert model.context_window("openai/never-heard-of-it") == 4321
    assert model.count_tokens("gpt-4o-mini", [{"role": "user", "content": "hello world"}]) > 2
    estimate = model.estimate_usage("gpt-4o-mini", HI, "a reply")
    assert estimate.estimated and estimate.cost_known and estimate.cost_usd > 0


def test_error_classification() -> None:
    litellm = load_litellm()

    class Status(Exception):
        def __init__(self, status: int) -> None:
            self.status_code = status

    assert classify_error(litellm, Status(429)) == (True, 429)
    assert classify_error(litellm, Status(502)) == (True, 502)
    assert classify_error(litellm, Status(400)) == (False, 400)
    assert classify_error(litellm, ConnectionResetError()) == (True, None)
    assert classify_error(litellm, ValueError()) == (False, None)


def test_factory_routes_demo_and_reads_settings() -> None:
    settings = Settings(llm_model_aliases={"x": "y"}, llm_max_retries=7)
    router = build_chat_model(settings, api_base="http://127.0.0.1:1/v1")
    backend = router.backend("openai/gpt-4o-mini")
    assert isinstance(backend, LiteLLMChatModel)
    assert backend.max_retries == 7 and backend.aliases == {"x": "y"}
    assert backend.api_base == "http://127.0.0.1:1/v1"
    assert router.context_window("shoal/demo") == 32_000


async def test_known_model_is_priced(
    fake_llm: FakeLLMServer, litellm_model: LiteLLMChatModel
) -> None:
    fake_llm.script(FakeTurn(text="ok", usage=(1000, 1000)))
    usage = (await collect(litellm_model, model="openai/gpt-4o-mini"))[-1]
    assert isinstance(usage, Usage) and usage.cost_known
    assert usage.cost_usd == pytest.approx(0.00075)


def test_an_unpriced_model_is_looked_up_once() -> None:
    from types import SimpleNamespace

    from shoal.llm.litellm_adapter import _priced

    calls: list[str] = []

    def cost_per_token(*, model: str, prompt_tokens: int, completion_tokens: int) -> object:
        calls.append(model)
        raise ValueError("This model isn't mapped yet.")

    stub = SimpleNamespace(cost_per_token=cost_per_token)
    for _ in range(3):
        usage = _priced(stub, "acme/unpriced-1", 10, 5, estimated=False)  # type: ignore[arg-type]
        assert usage.cost_known is False and usage.cost_usd == 0.0
    assert calls == ["acme/unpriced-1"]
