"""Fixtures for the LLM layer: the fake OpenAI-compatible server and LiteLLM pointed at it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from shoal.llm.fake_server import FakeLLMServer
from shoal.llm.litellm_adapter import LiteLLMChatModel

FAKE_MODEL = "openai/fake-model"


@pytest.fixture(autouse=True)
def _litellm_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_OFFLINE_MODE", "true")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest.fixture
def litellm_model(fake_llm: FakeLLMServer) -> LiteLLMChatModel:
    return LiteLLMChatModel(
        api_base=fake_llm.url + "/v1",
        api_key="sk-test",
        max_retries=2,
        retry_base_delay=0.001,
        retry_max_delay=0.01,
        timeout=10,
    )
