"""Checkout and portal sessions: owners only, return URLs on an allowed origin only.

Stripe is called here (bounded; an outage is 503), never on the run path. With billing off
these refuse with 400 before any Stripe call.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.accounts.repository import AccountRepository
from shoal.auth.principal import Principal
from shoal.billing.plans import plan_book
from shoal.billing.repository import BillingRepository
from shoal.billing.schemas import CheckoutCreate, CheckoutSession, PortalCreate, PortalSession
from shoal.billing.service import GOOD_STANDING
from shoal.config import Settings
from shoal.db.models import BillingSubscription
from shoal.errors import BadRequest, Conflict, Forbidden, NotFound, ValidationFailed

if TYPE_CHECKING:
    from shoal.billing.stripe import StripeGateway


def require_enabled(settings: Settings) -> None:
    if not settings.billing_enabled:
        raise BadRequest("Billing is not enabled on this server (SHOAL_BILLING_ENABLED).")


async def require_owner(session: AsyncSession, principal: Principal, account_id: uuid.UUID) -> None:
    """Members may look; only owners manage billing (403). Non-members get 404."""
    role = await AccountRepository(session).member_role(account_id, principal.user_id)
    if role is None:
        raise NotFound("Account not found.")
    if role != "owner":
        raise Forbidden("Only owners of the account can manage its billing.")


def _origin(url: str) -> str | None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_origins(settings: Settings) -> set[str]:
    candidates = [settings.public_url, *settings.cors_origins]
    candidates += settings.billing_allowed_redirect_origins
    return {origin for c in candidates if c != "*" and (origin := _origin(c)) is not None}


def check_redirect(settings: Settings, url: str, field: str) -> str:
    """``url`` if it is on SHOAL_PUBLIC_URL, SHOAL_CORS_ORIGINS or the billing allow-list."""
    origin = _origin(url)
    if origin is None or origin not in allowed_origins(settings):
        raise BadRequest(
            f"{field} must be an http(s) URL on an allowed origin "
            "(SHOAL_PUBLIC_URL, SHOAL_CORS_ORIGINS or SHOAL_BILLING_ALLOWED_REDIRECT_ORIGINS)."
        )
    return url.strip()


async def _customer(
    session: AsyncSession,
    gateway: StripeGateway,
    principal: Principal,
    row: BillingSubscription,
) -> str:
    """The account's Stripe customer, created on first need."""
    if row.stripe_customer_id:
        return row.stripe_customer_id
    accounts = AccountRepository(session)
    account = await accounts.get_account(row.account_id)
    if account is None:
        raise NotFound("Account not found.")
    email = principal.email
    if email is None:
        user = await accounts.get_user(account.primary_owner_user_id)
        email = user.email if user else None
    row.stripe_customer_id = await gateway.create_customer(
        account_id=row.account_id, email=email, name=account.name
    )
    await BillingRepository(session).flush()
    return row.stripe_customer_id


async def create_checkout(
    session: AsyncSession,
    principal: Principal,
    *,
    settings: Settings,
    account_id: uuid.UUID,
    body: CheckoutCreate,
) -> CheckoutSession:
    """A Stripe Checkout session subscribing the account to ``body.plan``."""
    require_enabled(settings)
    await require_owner(session, principal, account_id)
    book = plan_book(settings)
    plan = book.get(body.plan)
    if plan is None or not plan.stripe_price_id:
        buyable = sorted(p.name for p in book.plans.values() if p.stripe_price_id)
        message = f"plan: {body.plan!r} cannot be bought; choose one of {buyable}"
        raise ValidationFailed(message, errors=[{"loc": ["body", "plan"], "msg": message}])
    success_url = check_redirect(settings, body.success_url, "success_url")
    cancel_url = check_redirect(settings, body.cancel_url, "cancel_url")
    row = await BillingRepository(session).ensure_subscription(account_id)
    if row.status in GOOD_STANDING and row.stripe_subscription_id:
        raise Conflict(
            "The account already has an active subscription; change it in the billing portal."
        )
    async with _gateway(settings) as gateway:
        customer_id = await _customer(session, gateway, principal, row)
        session_id, url = await gateway.create_checkout_session(
            account_id=account_id,
            customer_id=customer_id,
            price_id=plan.stripe_price_id,
            plan=plan.name,
            success_url=success_url,
            cancel_url=cancel_url,
        )
    return CheckoutSession(session_id=session_id, url=url)


async def create_portal(
    session: AsyncSession,
    principal: Principal,
    *,
    settings: Settings,
    account_id: uuid.UUID,
    body: PortalCreate,
) -> PortalSession:
    """A Stripe customer-portal session for the account (manage or cancel)."""
    require_enabled(settings)
    await require_owner(session, principal, account_id)
    return_url = check_redirect(settings, body.return_url or settings.public_url, "return_url")
    row = await BillingRepository(session).ensure_subscription(account_id)
    async with _gateway(settings) as gateway:
        customer_id = await _customer(session, gateway, principal, row)
        url = await gateway.create_portal_session(customer_id=customer_id, return_url=return_url)
    return PortalSession(url=url)


def _gateway(settings: Settings) -> StripeGateway:
    """The Stripe adapter, imported on first use (the SDK is not loaded while billing is off)."""
    from shoal.billing.stripe import StripeGateway

    return StripeGateway(settings)
