"""Plans and limits: spend limits, allowed models, caps, periods (billing on, packaged plans)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.billing import service as billing
from shoal.billing.plans import Plan, plan_book
from shoal.billing.repository import BillingRepository
from shoal.config import Settings, load_settings
from shoal.db.models import UsageEntry
from shoal.db.session import unit_of_work
from shoal.errors import ConfigError, ModelNotAllowed, PaymentRequired
from shoal.kit.time import utcnow
from tests.billing.conftest import spend
from tests.conftest import TestUser


@pytest.fixture
def settings_overrides(billing_on: dict[str, Any]) -> dict[str, Any]:
    return {**billing_on, "llm_model_aliases": {"smart": "openai/gpt-4o"}}


async def test_free_plan_limits_spend_and_models(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser
) -> None:
    settings: Settings = app.state.settings
    async with unit_of_work(app.state.session_factory) as session:
        await billing.check_can_start(
            session, settings=settings, account_id=user.account_id, model_name="gpt-4o-mini"
        )
        await billing.check_can_start(
            session, settings=settings, account_id=user.account_id, model_name="shoal/demo"
        )
        for model in ("gpt-4o", "smart", "anthropic/claude-opus-4-20250514"):
            with pytest.raises(ModelNotAllowed) as denied:
                await billing.check_can_start(
                    session, settings=settings, account_id=user.account_id, model_name=model
                )
            assert denied.value.status == 402
            assert "gpt-4o-mini*" in denied.value.extra["allowed_models"]
        assert await billing.concurrency_cap(session, user.account_id, settings=settings) == 2
        assert not await billing.over_limit(session, user.account_id, settings=settings)

    await spend(app, user.account_id, cost_usd=4.99)
    async with unit_of_work(app.state.session_factory) as session:
        assert not await billing.over_limit(session, user.account_id, settings=settings)
    await spend(app, user.account_id, cost_usd=0.01)  # exactly $5: the limit is reached
    async with unit_of_work(app.state.session_factory) as session:
        assert await billing.over_limit(session, user.account_id, settings=settings)
        with pytest.raises(PaymentRequired) as blocked:
            await billing.check_can_start(
                session, settings=settings, account_id=user.account_id, model_name="gpt-4o-mini"
            )
    assert blocked.value.code == "billing_limit"

    body = (
        await client.get(
            "/api/billing/check-status", params={"model_name": "gpt-4o"}, headers=user.headers
        )
    ).json()
    assert body["can_run"] is False and body["code"] == "billing_limit"
    assert body["plan"] == "free" and body["spent_usd"] == pytest.approx(5.0)


async def test_check_status_names_a_model_the_plan_does_not_allow(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    ok = (await client.get("/api/billing/check-status", headers=user.headers)).json()
    assert ok["can_run"] is True and ok["code"] is None and ok["plan"] == "free"
    denied = (
        await client.get(
            "/api/billing/check-status", params={"model_name": "gpt-4o"}, headers=user.headers
        )
    ).json()
    assert denied["can_run"] is False and denied["code"] == "model_not_allowed"


async def test_available_models_follow_the_plan(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.get("/api/billing/available-models", headers=user.headers)
    assert response.status_code == 200
    body = response.json()
    ids = [m["id"] for m in body["models"]]
    assert body["plan"] == "free"
    assert ids[0] == body["default_model"] == "shoal/demo"
    assert "gpt-4o-mini" in ids and "gemini/gemini-2.0-flash" in ids
    assert "gpt-4o" not in ids and "anthropic/claude-opus-4-20250514" not in ids


async def test_a_subscribed_account_counts_spend_from_its_stripe_period(
    app: FastAPI, user: TestUser
) -> None:
    settings: Settings = app.state.settings
    now = utcnow()
    async with unit_of_work(app.state.session_factory) as session:
        row = await BillingRepository(session).ensure_subscription(user.account_id)
        row.status, row.plan = "active", "pro"
        row.current_period_start = now - timedelta(hours=1)
        row.current_period_end = now + timedelta(days=29)
        session.add(
            UsageEntry(
                idempotency_key=f"old:{uuid.uuid4()}",
                kind="llm",
                account_id=user.account_id,
                model="gpt-4o",
                cost_micro_usd=7_000_000,
                created_at=now - timedelta(hours=2),  # before the period
            )
        )
    await spend(app, user.account_id, cost_usd=1.25)
    async with unit_of_work(app.state.session_factory) as session:
        spent = await billing.spend_this_period(session, user.account_id, settings=settings)
        assert spent == 1_250_000
        await billing.check_can_start(
            session, settings=settings, account_id=user.account_id, model_name="gpt-4o"
        )
        assert await billing.concurrency_cap(session, user.account_id, settings=settings) == 20


def test_plan_patterns() -> None:
    plan = Plan(name="p", models=("shoal/demo", "gpt-4o*", "anthropic/claude-3*"))
    assert plan.allows("shoal/demo") and plan.allows("gpt-4o-mini")
    assert plan.allows("openai/gpt-4o") and plan.allows("OpenAI/GPT-4o-mini")
    assert plan.allows("anthropic/claude-3-5-haiku-latest")
    assert not plan.allows("openrouter/anthropic/claude-3-opus")  # prefixed: not the same id
    assert not plan.allows("other/demo") and not plan.allows("o4-mini")
    assert Plan(name="all").allows("anything/at-all")


def test_plans_file_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "plans.toml"
    good.write_text(
        'default_plan = "starter"\n'
        "[plans.starter]\nmonthly_limit_usd = 1.5\nmodels = ['shoal/demo']\n"
        "[plans.team]\nstripe_price_id = 'price_team'\nmax_concurrent_runs = 4\n"
    )
    settings = Settings(billing_enabled=True, plans_file=good)
    book = plan_book(settings)
    assert book.default_plan.limit_micro_usd == 1_500_000
    assert book.by_price("price_team") == book.plans["team"]
    assert book.plans["team"].monthly_limit_usd is None  # unlimited
    assert plan_book(Settings()).default_plan.name == "unlimited"

    bad = tmp_path / "bad.toml"
    for text, fragment in (
        ('default_plan = "x"\n[plans.y]\n', "default_plan"),
        ('default_plan = "y"\n[plans.y]\nmonthly_limit_usd = -1\n', "monthly_limit_usd"),
        ("not toml = = =", "bad.toml"),
    ):
        bad.write_text(text)
        with pytest.raises(ConfigError) as exc:
            plan_book(Settings(billing_enabled=True, plans_file=bad))
        assert fragment in str(exc.value)
    with pytest.raises(ConfigError) as missing:
        load_settings(plans_file=str(tmp_path / "nope.toml"))
    assert "SHOAL_PLANS_FILE" in str(missing.value)
