"""Billing off (the embedded default): no Stripe, no limits — and usage still shown."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.billing import service as billing
from shoal.db.models import UsageEntry
from shoal.db.session import unit_of_work
from shoal.kit.time import utcnow
from tests.billing.conftest import WEBHOOK_SECRET, post_event, spend
from tests.billing.fake_stripe import FakeStripe
from tests.conftest import TestUser, make_user


@pytest.fixture
def settings_overrides(fake_stripe: FakeStripe) -> dict[str, Any]:
    # Stripe is configured but billing is off: nothing may reach it.
    return {
        "stripe_secret_key": "sk_test_fake",
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": fake_stripe.url,
    }


async def test_billing_off_never_calls_stripe_and_never_limits(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, fake_stripe: FakeStripe
) -> None:
    await spend(app, user.account_id, cost_usd=10_000.0, model="gpt-4o")
    async with unit_of_work(app.state.session_factory) as session:
        settings = app.state.settings
        await billing.check_can_start(
            session, settings=settings, account_id=user.account_id, model_name="any/model"
        )
        assert not await billing.over_limit(session, user.account_id, settings=settings)
        assert await billing.concurrency_cap(session, user.account_id, settings=settings) is None

    status = (await client.get("/api/billing/check-status", headers=user.headers)).json()
    assert status["can_run"] is True and status["plan"] == "unlimited"
    assert status["billing_enabled"] is False and status["spent_usd"] == 10_000.0
    sub = (await client.get("/api/billing/subscription", headers=user.headers)).json()
    assert sub["plan"] == "unlimited" and sub["status"] is None
    models = (await client.get("/api/billing/available-models", headers=user.headers)).json()
    assert models["default_model"] in [m["id"] for m in models["models"]]

    checkout = await client.post(
        "/api/billing/create-checkout-session",
        json={"plan": "pro", "success_url": "http://127.0.0.1:8000/", "cancel_url": "x"},
        headers=user.headers,
    )
    assert checkout.status_code == 400
    portal = await client.post("/api/billing/create-portal-session", headers=user.headers)
    assert portal.status_code == 400
    event = fake_stripe.event("customer.subscription.updated", {"id": "sub_x"})
    assert (await post_event(client, event)).status_code == 400
    assert fake_stripe.requests == []


async def test_usage_report_groups_and_filters_the_acting_accounts_ledger(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, other_user: TestUser
) -> None:
    thread_a, thread_b = uuid.uuid4(), uuid.uuid4()
    await spend(app, user.account_id, cost_usd=0.10, model="gpt-4o-mini", thread_id=thread_a)
    await spend(app, user.account_id, cost_usd=0.20, model="gpt-4o-mini", thread_id=thread_b)
    await spend(app, user.account_id, cost_usd=0.30, model="claude", thread_id=thread_b)
    await spend(app, other_user.account_id, cost_usd=9.0, model="gpt-4o-mini")
    yesterday = utcnow() - timedelta(days=1)
    async with unit_of_work(app.state.session_factory) as session:
        session.add(
            UsageEntry(
                idempotency_key=f"y:{uuid.uuid4()}",
                kind="llm",
                account_id=user.account_id,
                model="gpt-4o-mini",
                prompt_tokens=5,
                cost_micro_usd=40_000,
                created_at=yesterday,
            )
        )

    async def report(**params: str) -> dict[str, Any]:
        response = await client.get("/api/billing/usage", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    since = (utcnow() - timedelta(days=3)).isoformat()
    by_model = await report(group_by="model", **{"from": since})
    assert [(r["key"], r["cost_usd"]) for r in by_model["rows"]] == [
        ("gpt-4o-mini", pytest.approx(0.34)),
        ("claude", pytest.approx(0.30)),
    ]
    assert by_model["total"]["cost_usd"] == pytest.approx(0.64)
    assert by_model["total"]["prompt_tokens"] == 3005
    assert set(by_model) >= {"from", "to", "group_by", "rows", "total"}

    by_day = await report(group_by="day", **{"from": since})
    assert [r["key"] for r in by_day["rows"]] == [
        yesterday.strftime("%Y-%m-%d"),
        utcnow().strftime("%Y-%m-%d"),
    ]
    by_thread = await report(group_by="thread", **{"from": since})
    keys = {r["key"]: r["cost_usd"] for r in by_thread["rows"]}
    assert keys == {
        str(thread_b): pytest.approx(0.5),
        str(thread_a): pytest.approx(0.1),
        "none": pytest.approx(0.04),
    }

    today_only = await report(
        group_by="model", **{"from": (utcnow() - timedelta(hours=1)).isoformat()}
    )
    assert today_only["total"]["cost_usd"] == pytest.approx(0.60)

    bad_range = await client.get(
        "/api/billing/usage",
        params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=user.headers,
    )
    assert bad_range.status_code == 400
    bad_group = await client.get("/api/billing/usage?group_by=week", headers=user.headers)
    assert bad_group.status_code == 422
    stranger = await client.get(
        "/api/billing/usage",
        headers={**user.headers, "X-Account-Id": str(other_user.account_id)},
    )
    assert stranger.status_code == 404
    assert (await client.get("/api/billing/usage")).status_code == 401


async def test_usage_cli_shows_the_same_totals(app: FastAPI, settings: Any) -> None:
    from typer.testing import CliRunner

    from shoal.cli import app as cli

    someone = await make_user(app)
    thread_id = uuid.uuid4()
    await spend(app, someone.account_id, cost_usd=0.25, model="gpt-4o-mini", thread_id=thread_id)
    await spend(app, someone.account_id, cost_usd=0.5, model="claude", thread_id=thread_id)
    env = {
        "SHOAL_DATA_DIR": str(settings.data_dir),
        "SHOAL_DATABASE_URL": settings.effective_database_url,
        "COLUMNS": "160",
    }
    runner = CliRunner()

    async def invoke(*args: str) -> Any:  # the CLI runs its own event loop
        return await asyncio.to_thread(runner.invoke, cli, list(args), env=env)

    result = await invoke("usage", "--email", someone.email, "--group-by", "model")
    assert result.exit_code == 0, result.output
    assert "gpt-4o-mini" in result.output and "claude" in result.output
    assert "0.750000" in result.output and "unlimited" in result.output
    by_thread = await invoke(
        "usage", "--account-id", str(someone.account_id), "--group-by", "thread"
    )
    assert by_thread.exit_code == 0, by_thread.output
    assert str(thread_id) in by_thread.output
    both = await invoke("usage")
    assert both.exit_code == 1 and "exactly one" in both.output
    unknown = await invoke("usage", "--email", "nobody@example.com")
    assert unknown.exit_code == 1 and "no user" in unknown.output


async def test_usage_range_edges_are_400_not_500(client: httpx.AsyncClient, user: TestUser) -> None:
    for params in (
        {"from": "0001-01-01T00:00:00+05:00", "to": "2026-01-01T00:00:00Z"},
        {"from": "2026-01-01", "to": "9999-12-31T23:59:59-05:00"},
    ):
        response = await client.get("/api/billing/usage", params=params, headers=user.headers)
        assert response.status_code == 400, response.text
    naive_dates = await client.get(
        "/api/billing/usage",
        params={"from": "2026-01-01", "to": "2026-02-01"},
        headers=user.headers,
    )
    assert naive_dates.status_code == 200, naive_dates.text
    assert naive_dates.json()["from"].startswith("2026-01-01T00:00:00")
