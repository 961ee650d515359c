"""Billing fixtures: the fake Stripe server, billing-on settings, and small helpers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.billing import service as billing
from shoal.db.session import unit_of_work
from tests.billing.fake_stripe import FakeStripe, sign

WEBHOOK_SECRET = "whsec_test_secret"
PUBLIC_URL = "https://app.example.com"


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    server = FakeStripe().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def billing_on(fake_stripe: FakeStripe) -> dict[str, Any]:
    """Settings turning billing on against the fake (packaged free/pro plans)."""
    return {
        "billing_enabled": True,
        "stripe_secret_key": "sk_test_fake",
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": fake_stripe.url,
        "stripe_timeout_seconds": 3.0,  # the hang test waits this long; noisy CI needs slack
        "public_url": PUBLIC_URL,
    }


async def post_event(
    client: httpx.AsyncClient, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET
) -> httpx.Response:
    payload = json.dumps(event)
    return await client.post(
        "/api/billing/webhook",
        content=payload,
        headers={"Stripe-Signature": sign(payload, secret), "content-type": "application/json"},
    )


async def spend(
    app: FastAPI,
    account_id: uuid.UUID,
    *,
    cost_usd: float,
    model: str = "gpt-4o-mini",
    prompt_tokens: int = 1000,
    completion_tokens: int = 100,
    project_id: uuid.UUID | None = None,
    thread_id: uuid.UUID | None = None,
    estimated: bool = False,
) -> str:
    """Record one LLM call for the account, as the worker does; returns its key."""
    run_id = uuid.uuid4()
    key = f"{run_id}:1"
    async with unit_of_work(app.state.session_factory) as session:
        await billing.record_llm_usage(
            session,
            account_id=account_id,
            project_id=project_id,
            thread_id=thread_id,
            run_id=run_id,
            attempt=1,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd,
            estimated=estimated,
            key=key,
        )
    return key
