"""Stripe: the real `stripe` library against a local fake — checkout, webhooks, outages."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.billing import service as billing
from shoal.db.session import unit_of_work
from shoal.errors import PaymentRequired
from tests.billing.conftest import PUBLIC_URL, post_event, spend
from tests.billing.fake_stripe import FakeStripe
from tests.conftest import TestUser, make_user

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=<...>. to upload:DeprecationWarning")

CHECKOUT = {
    "plan": "pro",
    "success_url": f"{PUBLIC_URL}/billing/ok",
    "cancel_url": f"{PUBLIC_URL}/billing/cancel",
}


@pytest.fixture
def settings_overrides(billing_on: dict[str, Any]) -> dict[str, Any]:
    return billing_on


async def status(client: httpx.AsyncClient, user: TestUser) -> dict[str, Any]:
    response = await client.get("/api/billing/check-status", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def subscribe(client: httpx.AsyncClient, user: TestUser, fake: FakeStripe) -> str:
    """Checkout for pro and deliver Stripe's completed event; returns the subscription id."""
    response = await client.post(
        "/api/billing/create-checkout-session", json=CHECKOUT, headers=user.headers
    )
    assert response.status_code == 200, response.text
    event = fake.complete_checkout(response.json()["session_id"])
    delivered = await post_event(client, event)
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["applied"] is True
    sub_id: str = event["data"]["object"]["subscription"]
    return sub_id


async def test_checkout_then_signed_completion_activates_pro_and_raises_the_limit(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, fake_stripe: FakeStripe
) -> None:
    await spend(app, user.account_id, cost_usd=6.0)  # past the free plan's $5
    before = await status(client, user)
    assert before["plan"] == "free"
    assert before["can_run"] is False and before["code"] == "billing_limit"

    response = await client.post(
        "/api/billing/create-checkout-session", json=CHECKOUT, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"].startswith("https://checkout.stripe.test/")
    (created,) = fake_stripe.calls("/v1/checkout/sessions")
    assert created.form["line_items[0][price]"] == "price_shoal_pro_monthly"
    assert created.form["client_reference_id"] == str(user.account_id)
    assert created.form["success_url"] == CHECKOUT["success_url"]
    assert len(fake_stripe.calls("/v1/customers")) == 1

    event = fake_stripe.complete_checkout(body["session_id"])
    delivered = await post_event(client, event)
    assert delivered.status_code == 200, delivered.text

    after = await status(client, user)
    assert after["plan"] == "pro"
    assert after["can_run"] is True and after["code"] is None
    assert after["limit_usd"] == 200
    sub = (await client.get("/api/billing/subscription", headers=user.headers)).json()
    assert sub["status"] == "active"
    assert sub["stripe_subscription_id"] == event["data"]["object"]["subscription"]
    assert sub["spent_usd"] == pytest.approx(6.0)

    # A second checkout while subscribed is refused; the portal reuses the same customer.
    again = await client.post(
        "/api/billing/create-checkout-session", json=CHECKOUT, headers=user.headers
    )
    assert again.status_code == 409
    portal = await client.post("/api/billing/create-portal-session", headers=user.headers)
    assert portal.status_code == 200, portal.text
    assert portal.json()["url"].startswith("https://billing.stripe.test/")
    assert len(fake_stripe.calls("/v1/customers")) == 1


async def test_webhook_with_a_bad_signature_is_400_and_changes_nothing(
    client: httpx.AsyncClient, user: TestUser, fake_stripe: FakeStripe
) -> None:
    response = await client.post(
        "/api/billing/create-checkout-session", json=CHECKOUT, headers=user.headers
    )
    event = fake_stripe.complete_checkout(response.json()["session_id"])
    forged = await post_event(client, event, secret="whsec_not_the_secret")
    assert forged.status_code == 400
    assert forged.json()["code"] == "invalid_signature"
    unsigned = await client.post("/api/billing/webhook", json=event)
    assert unsigned.status_code == 400
    assert (await status(client, user))["plan"] == "free"
    # The genuine delivery of the same event is still applied afterwards.
    assert (await post_event(client, event)).json()["applied"] is True
    assert (await status(client, user))["plan"] == "pro"


async def test_the_same_event_replayed_ten_times_is_applied_once(
    client: httpx.AsyncClient, user: TestUser, fake_stripe: FakeStripe
) -> None:
    sub_id = await subscribe(client, user, fake_stripe)
    canceled = fake_stripe.subscription_event(
        sub_id, "customer.subscription.deleted", status="canceled", created=int(time.time()) + 5
    )
    results = [(await post_event(client, canceled)).json()["applied"] for _ in range(10)]
    assert results == [True] + [False] * 9
    assert (await status(client, user))["plan"] == "free"
    # A canceled subscription stays canceled, even if a stale "active" update comes later.
    stale = fake_stripe.subscription_event(
        sub_id, "customer.subscription.updated", status="active", created=int(time.time()) + 6
    )
    assert (await post_event(client, stale)).json()["applied"] is False
    assert (await status(client, user))["plan"] == "free"
    # ...and the account can subscribe again.
    response = await client.post(
        "/api/billing/create-checkout-session", json=CHECKOUT, headers=user.headers
    )
    assert response.status_code == 200


async def test_events_out_of_order_end_in_stripes_latest_state(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, fake_stripe: FakeStripe
) -> None:
    sub_id = await subscribe(client, user, fake_stripe)
    t = int(time.time()) + 10
    past_due = fake_stripe.subscription_event(
        sub_id, "customer.subscription.updated", status="past_due", created=t
    )
    recovered = fake_stripe.subscription_event(
        sub_id, "customer.subscription.updated", status="active", created=t + 1
    )
    canceled = fake_stripe.subscription_event(
        sub_id, "customer.subscription.deleted", status="canceled", created=t + 2
    )
    # Delivered newest first: the final state is the newest one, whatever the order.
    for event in (canceled, recovered, past_due):
        assert (await post_event(client, event)).status_code == 200
    sub = (await client.get("/api/billing/subscription", headers=user.headers)).json()
    assert sub["status"] == "canceled"
    assert sub["plan"] == "free"

    # Same events, second account, delivered in order except the middle one late.
    other = await make_user_subscribed(client, app, fake_stripe)
    t2 = int(time.time()) + 20
    sub2 = other["sub_id"]
    failed = fake_stripe.event(
        "invoice.payment_failed",
        {"id": "in_1", "object": "invoice", "customer": other["customer"], "subscription": sub2},
        created=t2,
    )
    fixed = fake_stripe.subscription_event(
        sub2, "customer.subscription.updated", status="active", created=t2 + 1
    )
    await post_event(client, fixed)
    await post_event(client, failed)  # older than the recovery: ignored
    assert (await status(client, other["user"]))["plan"] == "pro"
    later_failure = fake_stripe.event(
        "invoice.payment_failed",
        {"id": "in_2", "object": "invoice", "customer": other["customer"], "subscription": sub2},
        created=t2 + 2,
    )
    assert (await post_event(client, later_failure)).json()["applied"] is True
    body = (await client.get("/api/billing/subscription", headers=other["user"].headers)).json()
    assert body["status"] == "past_due" and body["plan"] == "free"


async def make_user_subscribed(
    client: httpx.AsyncClient, app: FastAPI, fake: FakeStripe
) -> dict[str, Any]:
    someone = await make_user(app)
    sub_id = await subscribe(client, someone, fake)
    return {"user": someone, "sub_id": sub_id, "customer": fake.subscriptions[sub_id]["customer"]}


@pytest.mark.parametrize("outage", ["500", "hang"])
async def test_stripe_down_is_503_on_billing_routes_but_never_blocks_good_standing_runs(
    client: httpx.AsyncClient,
    app: FastAPI,
    user: TestUser,
    fake_stripe: FakeStripe,
    outage: str,
) -> None:
    await subscribe(client, user, fake_stripe)
    await spend(app, user.account_id, cost_usd=50.0)  # over free's limit, within pro's
    if outage == "500":
        fake_stripe.status = 500
    else:
        fake_stripe.hang = True

    started = time.monotonic()
    portal = await client.post("/api/billing/create-portal-session", headers=user.headers)
    assert portal.status_code == 503
    assert portal.json()["code"] == "dependency_unavailable"
    assert time.monotonic() - started < 5  # bounded by SHOAL_STRIPE_TIMEOUT_SECONDS

    newcomer = await make_user(app)
    checkout = await client.post(
        "/api/billing/create-checkout-session", json=CHECKOUT, headers=newcomer.headers
    )
    assert checkout.status_code == 503

    # The run path reads the database only: the subscribed account still starts runs.
    calls = len(fake_stripe.requests)
    async with unit_of_work(app.state.session_factory) as session:
        await billing.check_can_start(
            session, settings=app.state.settings, account_id=user.account_id, model_name="gpt-4o"
        )
        with pytest.raises(PaymentRequired):
            await billing.check_can_start(
                session,
                settings=app.state.settings,
                account_id=newcomer.account_id,
                model_name="gpt-4o",
            )
    assert (await status(client, user))["can_run"] is True
    assert len(fake_stripe.requests) == calls


async def test_only_owners_manage_billing_members_get_403_others_404(
    client: httpx.AsyncClient, app: FastAPI, user: TestUser, fake_stripe: FakeStripe
) -> None:
    team = await client.post("/api/accounts", json={"name": "Team"}, headers=user.headers)
    assert team.status_code == 201, team.text
    team_id = team.json()["account_id"]
    member = await make_user(app)
    outsider = await make_user(app)
    added = await client.post(
        f"/api/accounts/{team_id}/members",
        json={"user_id": str(member.id), "role": "member"},
        headers=user.headers,
    )
    assert added.status_code == 201, added.text

    def as_(who: TestUser) -> dict[str, str]:
        return {**who.headers, "X-Account-Id": team_id}

    for path, body in (
        ("/api/billing/create-checkout-session", CHECKOUT),
        ("/api/billing/create-portal-session", {}),
    ):
        assert (await client.post(path, json=body, headers=as_(member))).status_code == 403
        assert (await client.post(path, json=body, headers=as_(outsider))).status_code == 404
    assert fake_stripe.requests == []
    # Members can still see the account's standing.
    seen = await client.get("/api/billing/subscription", headers=as_(member))
    assert seen.status_code == 200 and seen.json()["plan"] == "free"
    owner = await client.post(
        "/api/billing/create-checkout-session", json=CHECKOUT, headers=as_(user)
    )
    assert owner.status_code == 200, owner.text
    (created,) = fake_stripe.calls("/v1/checkout/sessions")
    assert created.form["client_reference_id"] == team_id


@pytest.mark.parametrize(
    "field,url",
    [
        ("success_url", "https://evil.example.net/ok"),
        ("cancel_url", "javascript:alert(1)"),
        ("success_url", "https://app.example.com.evil.net/ok"),
    ],
)
async def test_redirect_urls_must_be_on_an_allowed_origin(
    client: httpx.AsyncClient, user: TestUser, fake_stripe: FakeStripe, field: str, url: str
) -> None:
    response = await client.post(
        "/api/billing/create-checkout-session",
        json={**CHECKOUT, field: url},
        headers=user.headers,
    )
    assert response.status_code == 400
    assert fake_stripe.requests == []


async def test_unknown_or_unbuyable_plan_is_422(
    client: httpx.AsyncClient, user: TestUser, fake_stripe: FakeStripe
) -> None:
    for plan in ("platinum", "free"):
        response = await client.post(
            "/api/billing/create-checkout-session",
            json={**CHECKOUT, "plan": plan},
            headers=user.headers,
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
    assert fake_stripe.requests == []


async def test_a_checkout_completed_during_an_outage_is_applied_on_stripes_retry(
    client: httpx.AsyncClient, user: TestUser, fake_stripe: FakeStripe
) -> None:
    response = await client.post(
        "/api/billing/create-checkout-session", json=CHECKOUT, headers=user.headers
    )
    event = fake_stripe.complete_checkout(response.json()["session_id"])
    fake_stripe.status = 500  # the subscription cannot be read back
    first = await post_event(client, event)
    assert first.status_code == 503
    assert (await status(client, user))["plan"] == "free"
    fake_stripe.status = None
    retried = await post_event(client, event)  # Stripe retries the same event id
    assert retried.status_code == 200 and retried.json()["applied"] is True
    assert (await status(client, user))["plan"] == "pro"
