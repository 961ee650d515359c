"""``GET /metrics``: the §8 metrics, with plausible values after real runs, and the token."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from shoal.db.models import AgentRun
from shoal.db.session import unit_of_work
from shoal.kit.time import utcnow
from shoal.llm.base import ChatModel
from shoal.llm.types import LLMError
from tests.conftest import TestUser
from tests.observability.conftest import served
from tests.runs.conftest import PromptModel, StreamReader, new_thread, start_run, wait_run

NAMES = {
    "shoal_runs_total",
    "shoal_queue_depth",
    "shoal_queue_wait_seconds",
    "shoal_time_to_first_token_seconds",
    "shoal_run_duration_seconds",
    "shoal_active_runs",
    "shoal_lease_expiries_total",
    "shoal_llm_errors_total",
    "shoal_sandbox_exec_seconds",
    "shoal_sse_subscribers",
}


class FailingOnPrompt(PromptModel):
    """``fail`` → a provider error; otherwise as PromptModel."""

    async def stream(self, request: Any) -> Any:
        if "fail" in str(request.messages[-1].get("content")):
            raise LLMError("provider down", provider_status=503)
        async for chunk in super().stream(request):
            yield chunk


@pytest.fixture
def chat_model() -> ChatModel:
    return FailingOnPrompt()


async def scrape(client: httpx.AsyncClient, **headers: str) -> dict[str, float]:
    """Every sample as ``name{label="v",…}`` → value."""
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_a_run_shows_in_the_metrics(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.get("/metrics")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert {n.removesuffix("_total") for n in NAMES} <= families  # counters: name_total
    before = await scrape(client)
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "slow 5 0.05")
    assert (await wait_run(client, user, run_id))["status"] == "completed"
    await asyncio.sleep(0.1)  # the terminal write's after-commit count
    after = await scrape(client)
    assert delta(after, before, 'shoal_runs_total{status="completed"}') == 1
    for histogram in ("queue_wait", "time_to_first_token", "run_duration"):
        assert delta(after, before, f"shoal_{histogram}_seconds_count") == 1, histogram
    duration = delta(after, before, "shoal_run_duration_seconds_sum")
    first_token = delta(after, before, "shoal_time_to_first_token_seconds_sum")
    waited = delta(after, before, "shoal_queue_wait_seconds_sum")
    assert 0.2 <= duration < 30  # five deltas 50 ms apart
    assert 0 < first_token < duration
    assert 0 <= waited < 30
    assert after["shoal_active_runs"] == 0
    assert after["shoal_queue_depth"] == 0
    labels = " ".join(after)
    assert "account" not in labels and "user" not in labels  # no per-tenant labels


async def test_queue_depth_active_runs_and_llm_errors(
    client: httpx.AsyncClient, user: TestUser, chat_model: PromptModel
) -> None:
    before = await scrape(client)
    thread_id, _ = await new_thread(client, user)
    first = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()
    second = await start_run(client, user, thread_id, "hi", multitask_strategy="enqueue")
    during = await scrape(client)
    assert during["shoal_queue_depth"] == 1  # counted in the database
    assert during["shoal_active_runs"] == 1
    await client.post(f"/api/agent-run/{first}/stop", headers=user.headers)
    assert (await wait_run(client, user, second))["status"] == "completed"
    other, _ = await new_thread(client, user)
    failed = await start_run(client, user, other, "fail", model_name="anthropic/claude-test")
    assert (await wait_run(client, user, failed))["status"] == "failed"
    await asyncio.sleep(0.1)
    after = await scrape(client)
    assert after["shoal_queue_depth"] == 0 and after["shoal_active_runs"] == 0
    assert delta(after, before, 'shoal_runs_total{status="stopped"}') == 1
    assert delta(after, before, 'shoal_runs_total{status="failed"}') == 1
    assert delta(after, before, 'shoal_llm_errors_total{provider="anthropic"}') == 1


# The heartbeat never renews the lease during the test; the embedded sweeper (every 0.5 s)
# finds it lapsed once the test moves it into the past.
LONG_LEASE = {"run_lease_seconds": 3600.0, "run_heartbeat_seconds": 1800.0}


@pytest.mark.parametrize("settings_overrides", [LONG_LEASE], ids=["long-lease"])
async def test_a_lapsed_lease_is_counted(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, chat_model: PromptModel
) -> None:
    before = await scrape(client)
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "stall")
    await chat_model.wait_stalled()
    await asyncio.sleep(0.6)  # the first delta is stored (that write renews the lease too)
    # The worker "dies": its lease is in the past; the sweeper takes the run away.
    async with unit_of_work(app.state.session_factory) as session:
        await session.execute(
            update(AgentRun)
            .where(AgentRun.id == uuid.UUID(run_id))
            .values(lease_expires_at=utcnow() - timedelta(seconds=60))
        )
    run = await wait_run(client, user, run_id)
    assert run["error"]["code"] == "worker_lost"
    await asyncio.sleep(0.1)
    after = await scrape(client)
    assert delta(after, before, "shoal_lease_expiries_total") == 1


async def test_sse_subscribers_are_counted_while_streams_are_open(
    app: FastAPI, user: TestUser, chat_model: PromptModel
) -> None:
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        before = await scrape(http)
        thread_id, _ = await new_thread(http, user)
        run_id = await start_run(http, user, thread_id, "stall")
        await chat_model.wait_stalled()
        async with (
            http.stream(
                "GET", f"/api/agent-run/{run_id}/stream", headers=user.headers
            ) as run_stream,
            http.stream(
                "GET", f"/api/threads/{thread_id}/stream", headers=user.headers
            ) as thread_stream,
        ):
            readers = [StreamReader(run_stream), StreamReader(thread_stream)]
            for reader in readers:
                assert await reader.next() is not None
            during = await scrape(http)
            assert delta(during, before, "shoal_sse_subscribers") == 2
        await http.post(f"/api/agent-run/{run_id}/stop", headers=user.headers)
        await wait_run(http, user, run_id)
        for _ in range(100):  # the server notices the hang-ups
            after = await scrape(http)
            if delta(after, before, "shoal_sse_subscribers") == 0:
                break
            await asyncio.sleep(0.05)
        assert delta(after, before, "shoal_sse_subscribers") == 0


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": "scrape-me"}], ids=["token"])
async def test_a_metrics_token_is_required_when_set(client: httpx.AsyncClient) -> None:
    missing = await client.get("/metrics")
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["code"] == "unauthorized"
    assert "shoal_" not in wrong.text
    ok = await scrape(client, Authorization="Bearer scrape-me")
    assert "shoal_queue_depth" in ok


async def test_metrics_are_open_by_default(client: httpx.AsyncClient) -> None:
    assert "shoal_active_runs" in await scrape(client)
