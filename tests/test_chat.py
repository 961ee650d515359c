"""`shoal chat` against the app served by a real uvicorn on 127.0.0.1 (src/shoal/chat/).

The CLI is synchronous; it runs as a subprocess (the real command, stdout a pipe) or in a thread
(``run_chat`` with string streams), so the server keeps serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.chat import ChatConfig, run_chat
from shoal.llm.base import ChatModel
from shoal.llm.scripted import ScriptedChatModel, ScriptedTurn
from shoal.llm.types import LLMError
from tests.conftest import TestUser
from tests.support import serve_app

ANSWER = "The quick brown fox jumps over the lazy dog, twice over."


@pytest.fixture
def chat_model() -> ChatModel:
    return ScriptedChatModel()


@pytest.fixture
async def server_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve_app(app) as address:
        yield f"http://{address}"


@dataclass
class Live:
    url: str
    key: str
    user: TestUser
    model: ScriptedChatModel

    async def get(self, path: str) -> Any:
        async with httpx.AsyncClient(base_url=self.url, headers=self.user.headers) as http:
            response = await http.get(path)
            assert response.status_code == 200, response.text
            return response.json()


@pytest.fixture
async def live(server_url: str, user: TestUser, chat_model: ScriptedChatModel) -> Live:
    async with httpx.AsyncClient(base_url=server_url, headers=user.headers) as http:
        response = await http.post("/api/api-keys", json={"name": "chat-test"})
    assert response.status_code == 201, response.text
    return Live(server_url, response.json()["secret"], user, chat_model)


@dataclass
class Result:
    code: int
    out: str
    err: str


async def shoal_chat(
    *args: str, env: dict[str, str] | None = None, input: bytes | None = None
) -> Result:
    """The real command as a subprocess (stdout and stderr are pipes, not terminals)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal.cli",
        "chat",
        *args,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(input), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


class TTYInput(io.StringIO):
    def isatty(self) -> bool:
        return True


async def chat_in_thread(
    config: ChatConfig,
    prompt: str | None,
    *,
    stdin: io.StringIO | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        run_chat,
        config,
        prompt,
        stdin=stdin or io.StringIO(),
        stdout=out,
        stderr=err,
        transport=transport,
    )
    return Result(code, out.getvalue(), err.getvalue())


async def test_prompt_argument_prints_the_streamed_answer_and_exits_0(live: Live) -> None:
    live.model.add(ScriptedTurn(text=ANSWER))
    result = await shoal_chat(
        "--url", live.url, "say the fox line", env={"SHOAL_API_KEY": live.key}
    )
    assert result.code == 0, result.err
    assert result.out == ANSWER + "\n"  # only the answer on stdout: scripts can capture it
    assert "completed" in result.err and "stop" in result.err
    assert live.model.requests[-1].messages[-1]["content"] == "say the fox line"


async def test_prompt_from_stdin(live: Live) -> None:
    live.model.add(ScriptedTurn(text=ANSWER))
    result = await shoal_chat(
        "--url", live.url, "--api-key", live.key, input=b"what does the fox do?\n"
    )
    assert result.code == 0, result.err
    assert result.out.strip() == ANSWER
    assert live.model.requests[-1].messages[-1]["content"].strip() == "what does the fox do?"


async def test_failed_run_exits_1_with_the_error(live: Live) -> None:
    live.model.add(LLMError("the provider is on fire"))
    result = await chat_in_thread(ChatConfig(url=live.url, api_key=live.key), "hi")
    assert result.code == 1
    assert "failed" in result.err and "llm_error" in result.err
    assert "the provider is on fire" in result.err


async def test_json_prints_every_event_once_in_order(live: Live) -> None:
    live.model.add(ScriptedTurn(text=ANSWER))
    result = await chat_in_thread(ChatConfig(url=live.url, api_key=live.key, json_output=True), "x")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run_status" and events[-1]["data"]["status"] == "completed"
    assert "".join(e["data"]["text"] for e in events if e["type"] == "text_delta") == ANSWER


async def test_thread_option_continues_that_thread(live: Live) -> None:
    live.model.add(ScriptedTurn(text="one"), ScriptedTurn(text="two"))
    config = ChatConfig(url=live.url, api_key=live.key)
    first = await chat_in_thread(config, "first")
    assert first.code == 0, first.err
    threads = (await live.get("/api/threads"))["threads"]
    assert len(threads) == 1
    thread_id = threads[0]["thread_id"]
    assert thread_id in first.err  # told how to continue it
    config.thread_id = thread_id
    second = await chat_in_thread(config, "second")
    assert second.code == 0, second.err
    assert second.out.strip() == "two"
    messages = (await live.get(f"/api/threads/{thread_id}/messages"))["messages"]
    assert [m["content"]["content"] for m in messages] == ["first", "one", "second", "two"]
    assert len((await live.get("/api/threads"))["threads"]) == 1

    config.thread_id = "00000000-0000-0000-0000-000000000000"
    missing = await chat_in_thread(config, "third")
    assert missing.code == 1
    assert "not found" in missing.err


async def test_interactive_session_reuses_one_thread_until_exit(live: Live) -> None:
    live.model.add(ScriptedTurn(text="first answer"), ScriptedTurn(text="second answer"))
    stdin = TTYInput("hello\n\nagain\n/exit\nnever sent\n")
    result = await chat_in_thread(ChatConfig(url=live.url, api_key=live.key), None, stdin=stdin)
    assert result.code == 0, result.err
    assert result.out == "first answer\nsecond answer\n"
    assert result.err.count("completed") == 2
    threads = (await live.get("/api/threads"))["threads"]
    assert len(threads) == 1
    messages = (await live.get(f"/api/threads/{threads[0]['thread_id']}/messages"))["messages"]
    assert [m["content"]["content"] for m in messages] == [
        "hello",
        "first answer",
        "again",
        "second answer",
    ]
    assert len(live.model.requests) == 2


async def test_interactive_session_ends_at_eof(live: Live) -> None:
    live.model.add(ScriptedTurn(text="only"))
    stdin = TTYInput("just one\n")
    result = await chat_in_thread(ChatConfig(url=live.url, api_key=live.key), None, stdin=stdin)
    assert result.code == 0, result.err
    assert result.out == "only\n"


class CutFirstStream(httpx.HTTPTransport):
    """Drops the first run-stream connection after ``events`` events (a network failure)."""

    def __init__(self, events: int) -> None:
        super().__init__()
        self.events = events
        self.stream_cursors: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/stream"):
            self.stream_cursors.append(request.headers.get("last-event-id"))
            if len(self.stream_cursors) == 1:
                response.stream = _Cut(response.stream, self.events)  # type: ignore[arg-type]
        return response


class _Cut(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, events: int) -> None:
        self.inner = inner
        self.events = events

    def __iter__(self) -> Iterator[bytes]:
        seen = b""
        for chunk in self.inner:
            seen += chunk
            parts = seen.split(b"\n\n")
            if len(parts) > self.events:
                yield b"\n\n".join(parts[: self.events]) + b"\n\n"
                raise httpx.ReadError("connection reset by test")
        raise AssertionError("the stream ended before the cut")

    def close(self) -> None:
        self.inner.close()


async def test_dropped_stream_resumes_with_last_event_id(live: Live) -> None:
    live.model.add(ScriptedTurn(text=ANSWER, chunk_size=4))
    transport = CutFirstStream(events=5)
    result = await chat_in_thread(
        ChatConfig(url=live.url, api_key=live.key), "go", transport=transport
    )
    assert result.code == 0, result.err
    assert result.out == ANSWER + "\n"  # nothing lost, nothing twice
    assert transport.stream_cursors == [None, "5"]
    assert "resuming after event 5" in result.err


async def test_bad_api_key_is_one_clear_line(live: Live) -> None:
    result = await chat_in_thread(ChatConfig(url=live.url, api_key="shoal_sk_nope"), "hi")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "401" in result.err and "credentials" in result.err
    assert not live.model.requests


async def test_sign_in_with_email_and_password(app: FastAPI, server_url: str) -> None:
    from tests.conftest import make_user

    await make_user(app, email="chatter@example.com", password="pw-123456")
    config = ChatConfig(url=server_url, email="chatter@example.com", password="pw-123456")
    ok = await chat_in_thread(config, "hi")
    assert ok.code == 0, ok.err
    assert ok.out.strip() == "done"  # the scripted model's answer when unscripted
    config.password = "wrong-password"
    bad = await chat_in_thread(config, "hi")
    assert bad.code == 1
    assert "sign-in failed" in bad.err


async def test_no_credentials_without_a_terminal_is_a_usage_error() -> None:
    result = await chat_in_thread(ChatConfig(url="http://127.0.0.1:9"), "hi")
    assert result.code == 2
    assert "SHOAL_API_KEY" in result.err


async def test_connection_refused_names_shoal_serve() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    result = await shoal_chat("--url", f"http://127.0.0.1:{port}", "--api-key", "shoal_sk_x", "hi")
    assert result.code == 1
    assert f"is `shoal serve` running at http://127.0.0.1:{port}?" in result.err
    assert "Traceback" not in result.err
    assert result.err.count("\n") == 1


async def test_ctrl_c_stops_the_run(live: Live) -> None:
    live.model.add(ScriptedTurn(text="slow " * 100, chunk_size=5, delay=0.1))  # ~10 s
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal.cli",
        "chat",
        "--url",
        live.url,
        "take your time",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SHOAL_API_KEY": live.key},
    )
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.read(5), 30)  # the answer is streaming
    assert first == b"slow "
    proc.send_signal(signal.SIGINT)
    rest, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, err.decode()
    assert "stopping the run" in err.decode()
    assert "stopped" in err.decode().splitlines()[-1]
    assert len(first + rest) < len("slow " * 100)  # it did not run to the end
    thread = (await live.get("/api/threads"))["threads"][0]
    runs = (await live.get(f"/api/threads/{thread['thread_id']}/agent-runs"))["agent_runs"]
    assert [r["status"] for r in runs] == ["stopped"]


async def test_tool_calls_and_results_are_shown_beside_the_answer(live: Live) -> None:
    live.model.add(
        ScriptedTurn(text="Let me look.", tool_calls=[("expand_message", {"message_id": "nope"})]),
        ScriptedTurn(text="Nothing there."),
    )
    result = await chat_in_thread(ChatConfig(url=live.url, api_key=live.key), "expand it")
    assert result.code == 0, result.err
    assert result.out == "Let me look.\n\nNothing there.\n"
    assert '⚙ expand_message(message_id="nope")' in result.err
    assert "✗ expand_message" in result.err  # the tool failed: no such message
