"""The fake OpenAI-compatible provider itself."""

from __future__ import annotations

import asyncio
import json

import httpx

from shoal.llm.fake_server import DEFAULT_TURN_TEXT, FakeLLMServer, FakeToolCall, FakeTurn
from shoal.llm.fake_sse import check_tool_ordering


def sse_payloads(body: str) -> list[str]:
    return [line[6:] for line in body.splitlines() if line.startswith("data: ")]


async def post(server: FakeLLMServer, body: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.post(server.url + "/v1/chat/completions", json=body)


async def test_streams_text_tool_calls_and_usage(fake_llm: FakeLLMServer) -> None:
    fake_llm.script(
        FakeTurn(text="Hello", tool_calls=[FakeToolCall("f", {"a": 1}, "call_1", fragments=2)])
    )
    response = await post(
        fake_llm,
        {
            "model": "m",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status_code == 200
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    arguments = "".join(
        c["choices"][0]["delta"].get("tool_calls", [{}])[0].get("function", {}).get("arguments", "")
        for c in chunks
        if c["choices"]
    )
    assert json.loads(arguments) == {"a": 1}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert fake_llm.requests[0]["messages"][0]["content"] == "hi"


async def test_non_streaming_and_default_turn(fake_llm: FakeLLMServer) -> None:
    response = await post(fake_llm, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    body = response.json()
    assert body["choices"][0]["message"]["content"] == DEFAULT_TURN_TEXT


async def test_scripted_errors(fake_llm: FakeLLMServer) -> None:
    fake_llm.script(FakeTurn.error(429), FakeTurn.error(500, "boom"))
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert (await post(fake_llm, body)).status_code == 429
    second = await post(fake_llm, body)
    assert second.status_code == 500 and second.json()["error"]["message"] == "boom"


async def test_rejects_orphan_tool_messages_like_a_provider(fake_llm: FakeLLMServer) -> None:
    response = await post(
        fake_llm,
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "nope", "content": "x"},
            ],
        },
    )
    assert response.status_code == 400
    assert "role 'tool'" in response.json()["error"]["message"]
    assert fake_llm.pending_turns == 0


def test_ordering_rules() -> None:
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    ok = [{"role": "user", "content": "x"}, assistant, {"role": "tool", "tool_call_id": "a"}]
    assert check_tool_ordering(ok) is None
    assert check_tool_ordering([*ok, {"role": "tool", "tool_call_id": "a"}]) is None
    missing = [{"role": "user", "content": "x"}, assistant, {"role": "user", "content": "y"}]
    assert "Missing" in (check_tool_ordering(missing) or "")
    late = [*ok, {"role": "user", "content": "y"}, {"role": "tool", "tool_call_id": "a"}]
    assert check_tool_ordering(late) is not None
    assert check_tool_ordering([]) is not None


async def test_records_a_client_hanging_up_during_a_stall(fake_llm: FakeLLMServer) -> None:
    fake_llm.script(FakeTurn(text="abcdefgh" * 3, stall_after_first_chunk=30))
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    url = fake_llm.url + "/v1/chat/completions"
    async with (
        httpx.AsyncClient(timeout=5) as client,
        client.stream("POST", url, json=body) as response,
    ):
        async for _ in response.aiter_bytes():
            break
    for _ in range(100):
        if fake_llm.disconnects:
            break
        await asyncio.sleep(0.02)
    assert fake_llm.disconnects == 1
    assert fake_llm.records[0].completed is False


def test_sync_context_manager_and_restart() -> None:
    with FakeLLMServer() as server:
        assert server.port > 0
        response = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        )
        assert response.status_code == 200
    server.stop()  # idempotent
