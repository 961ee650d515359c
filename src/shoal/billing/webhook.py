"""Stripe webhooks: verified by signature, each event id applied at most once, in any order.

Each subscription event carries the subscription's state at the event's ``created`` time; an
account keeps the newest state it has seen (``last_event_at``). An older event arriving late
changes nothing; a ``canceled`` subscription never comes back (Stripe's own rule); on equal
timestamps the later stage of the life cycle wins. Stripe is read (the subscription behind a
completed checkout) *before* the event id is claimed, so an outage answers 503 and Stripe's
retry applies the event later.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from shoal.accounts.repository import AccountRepository
from shoal.billing.checkout import require_enabled
from shoal.billing.plans import PlanBook, plan_book
from shoal.billing.repository import BillingRepository
from shoal.billing.schemas import WebhookAck
from shoal.billing.service import GOOD_STANDING
from shoal.config import Settings
from shoal.db.models import BillingSubscription
from shoal.kit.ids import parse_id

log = structlog.get_logger(__name__)

SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
HANDLED = SUBSCRIPTION_EVENTS | {"checkout.session.completed", "invoice.payment_failed"}
# Life-cycle stage, to order two events with the same timestamp.
_STAGE = {
    "incomplete": 0,
    "incomplete_expired": 1,
    "trialing": 2,
    "active": 3,
    "past_due": 4,
    "unpaid": 5,
    "paused": 5,
    "canceled": 6,
}


@dataclass(frozen=True, slots=True)
class Update:
    """What one event says about one account's subscription."""

    at: datetime
    account_id: uuid.UUID | None
    customer_id: str | None
    subscription_id: str | None
    status: str | None
    plan: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    cancel_at_period_end: bool = False
    payment_failed: bool = False


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


def _id(value: Any) -> str | None:
    """A Stripe reference: an id string, or an expanded object's ``id``."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _from_subscription(obj: dict[str, Any], book: PlanBook, at: datetime) -> Update:
    items = (obj.get("items") or {}).get("data") or []
    first: dict[str, Any] = items[0] if items else {}
    price = _id(first.get("price"))
    metadata = obj.get("metadata") or {}
    plan = book.by_price(price) or book.get(metadata.get("plan"))
    if plan is None:
        log.warning("stripe_subscription_unknown_price", price=price)
    return Update(
        at=at,
        account_id=parse_id(str(metadata.get("account_id", ""))),
        customer_id=_id(obj.get("customer")),
        subscription_id=_id(obj.get("id")),
        status=obj.get("status"),
        plan=plan.name if plan else None,
        # Newer API versions keep the period on the subscription items.
        period_start=_ts(obj.get("current_period_start") or first.get("current_period_start")),
        period_end=_ts(obj.get("current_period_end") or first.get("current_period_end")),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
    )


async def _read(event: dict[str, Any], settings: Settings) -> Update | None:
    """The update an event carries (reading the subscription from Stripe after a checkout)."""
    kind = event.get("type")
    obj = (event.get("data") or {}).get("object") or {}
    at = _ts(event.get("created")) or datetime.now(UTC)
    book = plan_book(settings)
    if kind in SUBSCRIPTION_EVENTS:
        return _from_subscription(obj, book, at)
    if kind == "invoice.payment_failed":
        parent = ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        return Update(
            at=at,
            account_id=None,
            customer_id=_id(obj.get("customer")),
            subscription_id=_id(obj.get("subscription")) or _id(parent),
            status="past_due",
            payment_failed=True,
        )
    if kind == "checkout.session.completed":
        account_id = parse_id(str(obj.get("client_reference_id") or "")) or parse_id(
            str((obj.get("metadata") or {}).get("account_id", ""))
        )
        subscription_id = _id(obj.get("subscription"))
        if obj.get("mode") != "subscription" or subscription_id is None:
            return Update(at, account_id, _id(obj.get("customer")), None, None)
        from shoal.billing.stripe import StripeGateway  # the SDK loads with billing only

        async with StripeGateway(settings) as gateway:
            data = await gateway.retrieve_subscription(subscription_id)
        update = _from_subscription(data, book, at)
        return Update(
            at=at,
            account_id=account_id or update.account_id,
            customer_id=update.customer_id or _id(obj.get("customer")),
            subscription_id=update.subscription_id,
            status=update.status,
            plan=update.plan,
            period_start=update.period_start,
            period_end=update.period_end,
            cancel_at_period_end=update.cancel_at_period_end,
        )
    return None


def _supersedes(row: BillingSubscription, update: Update) -> bool:
    """Whether ``update`` is newer than what the row holds (out-of-order resolution)."""
    same = row.stripe_subscription_id == update.subscription_id
    if update.payment_failed:
        return same and row.status in GOOD_STANDING and _not_older(row, update)
    if update.status is None:  # a checkout that created no subscription: customer link only
        return False
    if same and row.status == "canceled" and update.status != "canceled":
        return False
    if not _not_older(row, update):
        return False
    if row.last_event_at is not None and update.at == row.last_event_at and same:
        return _STAGE.get(update.status, 0) >= _STAGE.get(row.status or "", 0)
    # Another subscription's news never hides the one in good standing.
    return same or row.status not in GOOD_STANDING or update.status in GOOD_STANDING


def _not_older(row: BillingSubscription, update: Update) -> bool:
    return row.last_event_at is None or update.at >= row.last_event_at


async def _row(repo: BillingRepository, session: AsyncSession, update: Update) -> Any:
    if (
        update.account_id is not None
        and await AccountRepository(session).get_account(update.account_id) is not None
    ):
        return await repo.ensure_subscription(update.account_id)
    if update.customer_id is not None:
        return await repo.subscription_by_customer(update.customer_id, for_update=True)
    return None


async def _apply(session: AsyncSession, update: Update) -> bool:
    repo = BillingRepository(session)
    row: BillingSubscription | None = await _row(repo, session, update)
    if row is None:
        log.warning("stripe_event_for_unknown_account", customer=update.customer_id)
        return False
    if (
        update.customer_id
        and row.stripe_customer_id is None
        and await repo.subscription_by_customer(update.customer_id) is None
    ):
        row.stripe_customer_id = update.customer_id
    if not _supersedes(row, update):
        await repo.flush()
        return False
    row.status = update.status
    row.last_event_at = update.at
    if not update.payment_failed:
        row.stripe_subscription_id = update.subscription_id
        row.plan = update.plan
        row.current_period_start = update.period_start
        row.current_period_end = update.period_end
        row.cancel_at_period_end = update.cancel_at_period_end
    await repo.flush()
    log.info(
        "billing_subscription_updated",
        account_id=str(row.account_id),
        status=row.status,
        plan=row.plan,
    )
    return True


async def handle(
    session: AsyncSession, *, settings: Settings, payload: bytes, signature: str | None
) -> WebhookAck:
    """Verify, then apply the event once. Bad signature → 400; Stripe down → 503 (retried)."""
    require_enabled(settings)
    from shoal.billing.stripe import verify_event

    event = verify_event(payload, signature, settings.stripe_webhook_secret or "")
    event_id, kind = str(event["id"]), str(event.get("type") or "")
    repo = BillingRepository(session)
    if await repo.event_seen(event_id):
        return WebhookAck(applied=False)
    update = await _read(event, settings) if kind in HANDLED else None
    if not await repo.claim_event(event_id, kind):
        return WebhookAck(applied=False)
    applied = await _apply(session, update) if update is not None else False
    log.info("stripe_event", event_id=event_id, type=kind, applied=applied)
    return WebhookAck(applied=applied)
