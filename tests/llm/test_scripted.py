"""The scripted ChatModel fake."""

from __future__ import annotations

import pytest

from shoal.llm import ChatModel, ScriptedChatModel, ScriptedTurn
from shoal.llm.types import ChatRequest, Finish, LLMError, TextDelta, ToolCallDelta, Usage

REQUEST = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])


async def test_replays_turns_and_records_requests() -> None:
    model = ScriptedChatModel(
        [ScriptedTurn(text="Hello world", tool_calls=[("f", {"a": 1}, "call_1")]), LLMError("x")]
    )
    assert isinstance(model, ChatModel)
    chunks = [c async for c in model.stream(REQUEST)]
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "Hello world"
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls[0].id == "call_1" and "".join(c.arguments for c in calls) == '{"a": 1}'
    assert isinstance(chunks[-2], Finish) and chunks[-2].reason == "tool_calls"
    assert isinstance(chunks[-1], Usage)
    with pytest.raises(LLMError):
        [c async for c in model.stream(REQUEST)]
    done = [c async for c in model.stream(REQUEST)]
    assert TextDelta("done") in done
    assert len(model.requests) == 3
    usage = model.estimate_usage("m", REQUEST.messages, "abc")
    assert usage.estimated and usage.cost_usd == 0
