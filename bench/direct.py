"""The baseline: ``litellm.acompletion(stream=True)`` straight to the fake LLM server."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from bench.stack import FAKE_KEY, FAKE_MODEL
from shoal.llm.litellm_adapter import aload_litellm

MESSAGES = [{"role": "user", "content": "hi"}]


async def litellm() -> ModuleType:
    return await aload_litellm()


async def first_chunk(module: ModuleType, fake_url: str) -> tuple[float, float]:
    """One streamed call: (seconds to the first chunk with text, seconds to the end)."""
    started = time.perf_counter()
    response: Any = await module.acompletion(
        model=FAKE_MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        api_base=f"{fake_url}/v1",
        api_key=FAKE_KEY,
        max_retries=0,
    )
    first: float | None = None
    async for chunk in response:
        if first is None and chunk.choices and getattr(chunk.choices[0].delta, "content", None):
            first = time.perf_counter()
    ended = time.perf_counter()
    if first is None:
        raise RuntimeError("the fake LLM answered without text")
    return first - started, ended - started
