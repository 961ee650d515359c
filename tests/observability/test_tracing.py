"""Langfuse tracing: a trace per run, a generation per LLM call, a span per tool call — exported
in the background, so a hanging Langfuse costs a run nothing and shutdown stays bounded."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.app import create_app
from shoal.config import Settings
from shoal.llm.scripted import ScriptedChatModel
from shoal.llm.types import Finish, LLMError, TextDelta, ToolCallDelta, Usage
from shoal.observability.tracing import trace_id_for
from tests.conftest import TestUser, make_user
from tests.observability.fake_langfuse import FakeLangfuse, Span
from tests.runs.conftest import new_thread, start_run, wait_run

PROMPT = "look up message nope"


def tool_turn() -> list[Any]:
    return [
        TextDelta("Let me "),
        TextDelta("look."),
        ToolCallDelta(index=0, id="call_trace_1", name="expand_message", arguments='{"message_'),
        ToolCallDelta(index=0, arguments='id": "nope"}'),
        Finish("tool_calls"),
        Usage("openai/gpt-test", 120, 9, 0.0012),
    ]


def answer_turn() -> list[Any]:
    return [TextDelta("Nothing there."), Finish("stop"), Usage("openai/gpt-test", 150, 4, 0.0008)]


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    server = FakeLangfuse()
    yield server
    server.close()


@pytest.fixture
def hanging() -> Iterator[FakeLangfuse]:
    server = FakeLangfuse(hanging=True)
    yield server
    server.close()


def traced(settings: Settings, host: str, **extra: Any) -> Settings:
    """``settings`` with Langfuse on (a fresh key: the SDK keeps one state per key)."""
    return settings.model_copy(
        update={
            "langfuse_public_key": f"pk-lf-{uuid.uuid4().hex}",
            "langfuse_secret_key": "sk-lf-test-secret",
            "langfuse_host": host,
            **extra,
        }
    )


@asynccontextmanager
async def running_app(
    settings: Settings, model: ScriptedChatModel
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, migrate=False, chat_model=model)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


async def one_run(app: FastAPI, client: httpx.AsyncClient) -> tuple[TestUser, str, str]:
    user = await make_user(app)
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, PROMPT, model_name="openai/gpt-test")
    run = await wait_run(client, user, run_id)
    assert run["status"] == "completed", run
    return user, thread_id, run_id


def the_trace(fake: FakeLangfuse, run_id: str) -> tuple[Span, list[Span], list[Span]]:
    """The run's root, generations and tool spans, each checked to be the root's child."""
    spans = fake.of_trace(trace_id_for(run_id))
    roots = [s for s in spans if s.type == "agent"]
    assert len(roots) == 1, [(s.name, s.type) for s in spans]
    root = roots[0]
    children = [s for s in spans if s is not root]
    assert all(s.parent_span_id == root.span_id for s in children)
    generations = sorted((s for s in children if s.type == "generation"), key=lambda s: s.start_ns)
    tools = [s for s in children if s.type == "tool"]
    return root, generations, tools


async def test_a_run_is_exported_as_a_trace(settings: Settings, fake: FakeLangfuse) -> None:
    model = ScriptedChatModel([tool_turn(), answer_turn()])
    configured = traced(settings, fake.url)
    async with running_app(configured, model) as (app, client):
        user, thread_id, run_id = await one_run(app, client)
    # the app has shut down, and shutdown flushed what was queued
    root, generations, tools = the_trace(fake, run_id)
    ids = {
        "run_id": run_id,
        "thread_id": thread_id,
        "account_id": str(user.account_id),
        "attempt": "1",
    }
    assert root.name == "agent_run"
    assert root.attributes["langfuse.trace.name"] == "agent_run"
    assert root.attributes["session.id"] == thread_id
    assert root.attributes["user.id"] == str(user.account_id)
    for key, value in ids.items():
        assert root.json_attr(f"langfuse.trace.metadata.{key}") == value
    assert root.json_attr("langfuse.observation.output")["status"] == "completed"

    assert len(generations) == 2  # one per LLM call
    first, second = generations
    for generation, (prompt, completion, cost) in zip(
        generations, [(120, 9, 0.0012), (150, 4, 0.0008)], strict=True
    ):
        assert generation.attributes["langfuse.observation.model.name"] == "openai/gpt-test"
        assert generation.json_attr("langfuse.observation.usage_details") == {
            "input": prompt,
            "output": completion,
            "total": prompt + completion,
        }
        assert generation.json_attr("langfuse.observation.cost_details") == {"total": cost}
        for key, value in ids.items():
            assert generation.json_attr(f"langfuse.observation.metadata.{key}") == value
        first_token = generation.json_attr("langfuse.observation.completion_start_time")
        first_token_ns = datetime.fromisoformat(first_token).timestamp() * 1e9
        assert generation.start_ns - 1e6 <= first_token_ns <= generation.end_ns + 1e6
    assert first.json_attr("langfuse.observation.output")["tool_calls"][0]["name"] == (
        "expand_message"
    )
    assert second.json_attr("langfuse.observation.output")["content"] == "Nothing there."
    prompt = second.json_attr("langfuse.observation.input")
    assert prompt[-1]["role"] == "tool"  # the second call saw the tool's result

    assert len(tools) == 1
    (tool,) = tools
    assert tool.name == "expand_message"
    assert tool.json_attr("langfuse.observation.input") == {"message_id": "nope"}
    assert tool.json_attr("langfuse.observation.metadata.tool_call_id") == "call_trace_1"
    assert tool.json_attr("langfuse.observation.metadata.success") is False
    assert "No message" in tool.attributes["langfuse.observation.output"]
    for key, value in ids.items():
        assert tool.json_attr(f"langfuse.observation.metadata.{key}") == value
    # in time order: call 1, its tool, call 2, all inside the run's span
    assert first.end_ns <= tool.start_ns <= tool.end_ns <= second.start_ns
    assert root.start_ns <= first.start_ns and second.end_ns <= root.end_ns
    expected = base64.b64encode(
        f"{configured.langfuse_public_key}:sk-lf-test-secret".encode()
    ).decode()
    assert set(fake.authorizations) == {f"Basic {expected}"}


async def test_a_failed_llm_call_is_an_error_in_the_trace(
    settings: Settings, fake: FakeLangfuse
) -> None:
    model = ScriptedChatModel([LLMError("provider exploded", provider_status=500)])
    async with running_app(traced(settings, fake.url), model) as (app, client):
        user = await make_user(app)
        thread_id, _ = await new_thread(client, user)
        run_id = await start_run(client, user, thread_id, "hi", model_name="openai/gpt-test")
        assert (await wait_run(client, user, run_id))["status"] == "failed"
    root, generations, tools = the_trace(fake, run_id)
    assert root.attributes["langfuse.observation.level"] == "ERROR"
    assert root.json_attr("langfuse.observation.output")["error"]["code"] == "llm_error"
    assert len(generations) == 1 and not tools
    assert generations[0].attributes["langfuse.observation.level"] == "ERROR"
    assert "provider exploded" in generations[0].attributes["langfuse.observation.status_message"]


async def test_an_app_restarted_with_the_same_keys_still_exports(
    settings: Settings, fake: FakeLangfuse
) -> None:
    configured = traced(settings, fake.url)
    run_ids = []
    for _ in range(2):
        model = ScriptedChatModel([answer_turn()])
        async with running_app(configured, model) as (app, client):
            run_ids.append((await one_run(app, client))[2])
    for run_id in run_ids:
        _root, generations, _ = the_trace(fake, run_id)
        assert len(generations) == 1


async def timed_run(settings: Settings) -> tuple[float, float]:
    """(seconds from start to a finished run, seconds the app took to shut down)."""
    model = ScriptedChatModel([tool_turn(), answer_turn()])
    app = create_app(settings, migrate=False, chat_model=model)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            user = await make_user(app)
            thread_id, _ = await new_thread(client, user)
            started = time.perf_counter()
            run_id = await start_run(client, user, thread_id, PROMPT)
            assert (await wait_run(client, user, run_id))["status"] == "completed"
            run_seconds = time.perf_counter() - started
        stopping = time.perf_counter()
    return run_seconds, time.perf_counter() - stopping


async def test_a_hanging_langfuse_costs_a_run_nothing(
    settings: Settings, hanging: FakeLangfuse, monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline_run, baseline_stop = await timed_run(settings)
    # Export at once, every span: the exporter is stuck on the fake while the run goes on.
    monkeypatch.setenv("LANGFUSE_FLUSH_AT", "1")
    monkeypatch.setenv("LANGFUSE_FLUSH_INTERVAL", "0.05")
    # Each export request would wait 30 s for an answer: only shoal's bound ends shutdown early.
    monkeypatch.setenv("LANGFUSE_TIMEOUT", "30")
    flush_timeout = 1.0
    configured = traced(settings, hanging.url, tracing_flush_timeout_seconds=flush_timeout)
    run_seconds, stop_seconds = await timed_run(configured)
    assert hanging.received.is_set()  # the SDK did try to export, and got no answer
    assert run_seconds < baseline_run * 3 + 2.0, (run_seconds, baseline_run)
    assert stop_seconds < baseline_stop + flush_timeout + 5.0, (stop_seconds, baseline_stop)


def test_tracing_is_off_without_keys_and_langfuse_is_never_loaded(tmp_path: Path) -> None:
    script = """
import asyncio, sys
from shoal.app import create_app
from shoal.config import Settings

settings = Settings(data_dir=sys.argv[1])
app = create_app(settings)

async def main():
    async with app.router.lifespan_context(app):
        assert app.state.run_host.tracer is None
asyncio.run(main())
print("langfuse" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LANGFUSE_PUBLIC_KEY": "", "LANGFUSE_SECRET_KEY": ""},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
