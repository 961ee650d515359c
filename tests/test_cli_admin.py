"""The operator commands (`shoal runs …`, `shoal accounts …`) through typer's CliRunner, on the
same database as a live app whose runs were created through the API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from click.testing import Result
from fastapi import FastAPI
from typer.testing import CliRunner

from shoal.cli import app as cli
from shoal.config import Settings
from shoal.llm.base import ChatModel
from shoal.llm.scripted import ScriptedChatModel, ScriptedTurn
from shoal.llm.types import ChatRequest, Chunk, TextDelta
from tests.conftest import TestUser

runner = CliRunner()


class PromptModel(ScriptedChatModel):
    """``stall`` streams one chunk then hangs; anything else answers in a few deltas."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = asyncio.Event()

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        last = str(request.messages[-1].get("content"))
        if last.startswith("stall"):
            yield TextDelta("partial")
            self.stalled.set()
            await asyncio.sleep(3600)
        for chunk in ScriptedTurn(text="hello operator", chunk_size=3).chunks(request):
            yield chunk


@pytest.fixture
def chat_model() -> ChatModel:
    return PromptModel()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Billing on (packaged free/pro plans) so that `set-plan` changes what the API reports.
    return {
        "billing_enabled": True,
        "stripe_secret_key": "sk_test_unused",
        "stripe_webhook_secret": "whsec_unused",
        "stripe_api_base": "http://127.0.0.1:9",
    }


def _env(settings: Settings) -> dict[str, str]:
    redis = {"SHOAL_REDIS_URL": settings.redis_url} if settings.redis_url else {}
    return {
        **redis,
        "SHOAL_DATA_DIR": str(settings.data_dir),
        "SHOAL_DATABASE_URL": settings.effective_database_url,
        "SHOAL_BILLING_ENABLED": "true",
        "STRIPE_SECRET_KEY": "sk_test_unused",
        "STRIPE_WEBHOOK_SECRET": "whsec_unused",
        "SHOAL_RUN_HEARTBEAT_SECONDS": str(settings.run_heartbeat_seconds),
        "SHOAL_RUN_LEASE_SECONDS": str(settings.run_lease_seconds),
        "COLUMNS": "250",  # rich tables: room for full ids
    }


async def _shoal(settings: Settings, *args: str) -> Result:
    return await asyncio.to_thread(runner.invoke, cli, list(args), env=_env(settings))


async def _start(
    client: httpx.AsyncClient,
    user: TestUser,
    prompt: str,
    thread_id: str | None = None,
    **extra: Any,
) -> tuple[str, str]:
    if thread_id is None:
        made = await client.post("/api/threads", json={"name": "t"}, headers=user.headers)
        thread_id = str(made.json()["thread_id"])
    started = await client.post(
        f"/api/threads/{thread_id}/agent/start",
        json={"prompt": prompt, **extra},
        headers=user.headers,
    )
    assert started.status_code == 202, started.text
    return str(started.json()["agent_run_id"]), thread_id


async def _wait_status(
    client: httpx.AsyncClient, user: TestUser, run_id: str, *statuses: str
) -> dict[str, Any]:
    for _ in range(1500):
        run = (await client.get(f"/api/agent-run/{run_id}", headers=user.headers)).json()
        if run["status"] in statuses:
            return dict(run)
        await asyncio.sleep(0.02)
    raise AssertionError(f"run never reached {statuses}: {run}")


async def test_runs_list_and_show(
    client: httpx.AsyncClient, settings: Settings, user: TestUser, other_user: TestUser
) -> None:
    done, _ = await _start(client, user, "hi")
    await _wait_status(client, user, done, "completed")
    theirs, _ = await _start(client, other_user, "hi")
    await _wait_status(client, other_user, theirs, "completed")

    listed = await _shoal(settings, "runs", "list")
    assert listed.exit_code == 0, listed.output
    assert done in listed.output and theirs in listed.output  # every account
    mine = await _shoal(settings, "runs", "list", "--account", str(user.account_id))
    assert done in mine.output and theirs not in mine.output
    none_active = await _shoal(settings, "runs", "list", "--status", "active")
    assert done not in none_active.output and "0 run(s)" in none_active.output
    bad = await _shoal(settings, "runs", "list", "--status", "exploded")
    assert bad.exit_code == 1 and "Unknown run status 'exploded'" in bad.output

    shown = await _shoal(settings, "runs", "show", done)
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert "completed" in out and str(user.account_id) in out
    assert "user: hi" in out  # the prompt message
    assert "text_delta ×" in out and "hello operator" in out  # deltas folded into one line
    assert "assistant: hello operator" in out
    missing = await _shoal(settings, "runs", "show", str(uuid.uuid4()))
    assert missing.exit_code == 1 and "No run" in missing.output
    garbage = await _shoal(settings, "runs", "show", "not-a-run")
    assert garbage.exit_code == 1 and "not a run id" in garbage.output
    assert "Traceback" not in garbage.output


async def test_runs_stop_really_stops_running_and_queued_runs(
    client: httpx.AsyncClient, settings: Settings, user: TestUser, chat_model: PromptModel
) -> None:
    running, thread_id = await _start(client, user, "stall")
    await asyncio.wait_for(chat_model.stalled.wait(), 30)
    queued, _ = await _start(client, user, "later", thread_id, multitask_strategy="enqueue")
    assert (await _wait_status(client, user, queued, "queued"))["status"] == "queued"

    # A queued run stops at once (and never reaches the model).
    stop_queued = await _shoal(settings, "runs", "stop", queued)
    assert stop_queued.exit_code == 0, stop_queued.output
    assert "stopped" in stop_queued.output and "it was queued" in stop_queued.output
    assert (await _wait_status(client, user, queued, "stopped"))["status"] == "stopped"

    # A running one: the CLI's own bus cannot reach this process, the heartbeat reads the flag.
    stop_running = await _shoal(settings, "runs", "stop", running)
    assert stop_running.exit_code == 0, stop_running.output
    assert "stop requested" in stop_running.output
    run = await _wait_status(client, user, running, "stopped", "failed", "completed")
    assert run["status"] == "stopped" and run["stop_requested_at"]
    assert len(chat_model.requests) == 1  # the queued run never ran

    again = await _shoal(settings, "runs", "stop", running)
    assert again.exit_code == 0 and "already finished" in again.output


async def test_accounts_list_set_plan_suspend_unsuspend(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    user: TestUser,
    chat_model: PromptModel,
) -> None:
    account = str(user.account_id)
    listed = await _shoal(settings, "accounts", "list")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if account in line)
    assert user.email in row and "personal" in row and "free" in row

    unknown = await _shoal(settings, "accounts", "set-plan", account, "platinum")
    assert unknown.exit_code == 1
    assert "No plan 'platinum'" in unknown.output and "free, pro" in unknown.output
    changed = await _shoal(settings, "accounts", "set-plan", account, "pro")
    assert changed.exit_code == 0, changed.output
    assert "free → pro" in changed.output
    status = (await client.get("/api/billing/check-status", headers=user.headers)).json()
    assert status["plan"] == "pro"
    nobody = await _shoal(settings, "accounts", "set-plan", str(uuid.uuid4()), "pro")
    assert nobody.exit_code == 1 and "No account" in nobody.output

    running, _ = await _start(client, user, "stall")
    await asyncio.wait_for(chat_model.stalled.wait(), 30)
    suspended = await _shoal(settings, "accounts", "suspend", account, "--reason", "unpaid")
    assert suspended.exit_code == 0, suspended.output
    assert "suspended" in suspended.output and "stopped 1 active run(s)" in suspended.output
    assert running in suspended.output
    run = await _wait_status(client, user, running, "stopped", "failed", "completed")
    assert run["status"] == "stopped"
    refused = await client.post("/api/projects", json={"name": "p"}, headers=user.headers)
    assert refused.status_code == 403 and "unpaid" in refused.json()["detail"]
    only_suspended = await _shoal(settings, "accounts", "list", "--suspended")
    assert account in only_suspended.output and "unpaid" in only_suspended.output
    assert "1 account(s)" in only_suspended.output

    lifted = await _shoal(settings, "accounts", "unsuspend", account)
    assert lifted.exit_code == 0 and "unsuspended" in lifted.output
    allowed = await client.post("/api/projects", json={"name": "p"}, headers=user.headers)
    assert allowed.status_code == 201, allowed.text
    noop = await _shoal(settings, "accounts", "unsuspend", account)
    assert noop.exit_code == 0 and "was not suspended" in noop.output


def test_set_plan_with_billing_off_records_the_plan_for_later(tmp_path: Any) -> None:
    env = {
        "SHOAL_DATA_DIR": str(tmp_path),
        "SHOAL_DATABASE_URL": f"sqlite:///{tmp_path / 'shoal.db'}",
        "COLUMNS": "250",
    }
    made = runner.invoke(
        cli, ["users", "create", "--email", "op@example.com", "--password", "pw-pw-pw"], env=env
    )
    assert made.exit_code == 0, made.output
    listed = runner.invoke(cli, ["accounts", "list"], env=env)
    account = next(w for w in listed.output.split() if w.count("-") == 4)
    assert "unlimited" in listed.output
    changed = runner.invoke(cli, ["accounts", "set-plan", account, "pro"], env=env)
    assert changed.exit_code == 0, changed.output
    assert "unlimited → pro" in changed.output and "billing is off" in changed.output
    on = {
        **env,
        "SHOAL_BILLING_ENABLED": "true",
        "STRIPE_SECRET_KEY": "sk",
        "STRIPE_WEBHOOK_SECRET": "wh",
    }
    with_billing = runner.invoke(cli, ["accounts", "list"], env=on)
    row = next(line for line in with_billing.output.splitlines() if account in line)
    assert "pro" in row
