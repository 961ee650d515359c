"""/api/billing/* (HTTP only). Everything acts for the acting account (`X-Account-Id`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from shoal.accounts.deps import ActingAccount, CurrentPrincipal
from shoal.billing import checkout, service, webhook
from shoal.billing.schemas import (
    AUTH_ERRORS,
    OWNER_ERRORS,
    AvailableModels,
    CheckoutCreate,
    CheckoutSession,
    CheckStatus,
    ErrorBody,
    GroupBy,
    PortalCreate,
    PortalSession,
    SubscriptionRead,
    UsageReport,
    WebhookAck,
)
from shoal.config import Settings
from shoal.db.deps import SessionDep

router = APIRouter(prefix="/billing", tags=["billing"])


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]


@router.get("/subscription", response_model=SubscriptionRead, responses=AUTH_ERRORS)
async def get_subscription(
    session: SessionDep, settings: SettingsDep, account_id: ActingAccount
) -> SubscriptionRead:
    """The account's plan, subscription state, billing period, spend and limit.

    Read from the database (as the last Stripe webhooks left it): never waits on Stripe.
    """
    return await service.subscription(session, settings=settings, account_id=account_id)


@router.get("/check-status", response_model=CheckStatus, responses=AUTH_ERRORS)
async def check_status(
    session: SessionDep,
    settings: SettingsDep,
    account_id: ActingAccount,
    model_name: Annotated[
        str | None, Query(max_length=200, description="also check this model against the plan")
    ] = None,
) -> CheckStatus:
    """Whether the account can start a run now (`can_run`); if not, `code` says why:
    `billing_limit` (the period's spend limit is used up) or `model_not_allowed`."""
    return await service.check_status(
        session, settings=settings, account_id=account_id, model=model_name
    )


@router.get("/available-models", response_model=AvailableModels, responses=AUTH_ERRORS)
async def available_models(
    session: SessionDep, settings: SettingsDep, account_id: ActingAccount
) -> AvailableModels:
    """The models of the catalogue that the account's plan allows (default model first)."""
    return await service.available_models(session, settings=settings, account_id=account_id)


@router.get(
    "/usage",
    response_model=UsageReport,
    responses={**AUTH_ERRORS, 400: {"model": ErrorBody, "description": "`to` before `from`."}},
)
async def usage(
    session: SessionDep,
    settings: SettingsDep,
    account_id: ActingAccount,
    from_: Annotated[
        datetime | None,
        Query(alias="from", description="start (inclusive, ISO 8601; default: period start)"),
    ] = None,
    to: Annotated[
        datetime | None, Query(description="end (exclusive, ISO 8601; default: period end)")
    ] = None,
    group_by: Annotated[GroupBy, Query(description="day | model | thread")] = "day",
) -> UsageReport:
    """Metered usage of the account from the ledger — it includes deleted projects and runs.

    Naive times are UTC. Sandbox exec rows have the key `sandbox` when grouped by model.
    """
    return await service.usage_report(
        session,
        settings=settings,
        account_id=account_id,
        start=from_,
        end=to,
        group_by=group_by,
    )


@router.post(
    "/create-checkout-session",
    response_model=CheckoutSession,
    responses={**OWNER_ERRORS, 409: {"model": ErrorBody, "description": "Already subscribed."}},
)
async def create_checkout_session(
    body: CheckoutCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: CurrentPrincipal,
    account_id: ActingAccount,
) -> CheckoutSession:
    """A Stripe Checkout URL subscribing the account to `plan` (owners only).

    `success_url` and `cancel_url` must be on SHOAL_PUBLIC_URL, SHOAL_CORS_ORIGINS or
    SHOAL_BILLING_ALLOWED_REDIRECT_ORIGINS. The subscription takes effect when Stripe's
    `checkout.session.completed` webhook arrives.
    """
    return await checkout.create_checkout(
        session, principal, settings=settings, account_id=account_id, body=body
    )


@router.post("/create-portal-session", response_model=PortalSession, responses=OWNER_ERRORS)
async def create_portal_session(
    session: SessionDep,
    settings: SettingsDep,
    principal: CurrentPrincipal,
    account_id: ActingAccount,
    body: PortalCreate | None = None,
) -> PortalSession:
    """A Stripe customer-portal URL to manage or cancel the subscription (owners only)."""
    return await checkout.create_portal(
        session, principal, settings=settings, account_id=account_id, body=body or PortalCreate()
    )


@router.post(
    "/webhook",
    response_model=WebhookAck,
    responses={
        400: {"model": ErrorBody, "description": "Bad `Stripe-Signature`, or billing is off."},
        503: {"model": ErrorBody, "description": "Stripe unavailable; Stripe will retry."},
    },
)
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookAck:
    """Stripe's events, verified with STRIPE_WEBHOOK_SECRET and applied once per event id."""
    payload = await request.body()
    return await webhook.handle(
        session, settings=settings, payload=payload, signature=stripe_signature
    )
