"""Billing shapes (DESIGN.md §4): check-status, usage, subscription, checkout and portal."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

GroupBy = Literal["day", "model", "thread"]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]


class ErrorBody(BaseModel):
    detail: str
    code: str


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": text} for status, text in pairs}


AUTH_ERRORS = _errors(
    (401, "No or invalid credentials (`unauthorized`)."),
    (404, "`X-Account-Id` names an account you are not a member of (`not_found`)."),
)
OWNER_ERRORS = {
    **AUTH_ERRORS,
    **_errors(
        (400, "Billing is off, or a URL is not on an allowed origin (`bad_request`)."),
        (403, "Only owners of the account manage its billing (`forbidden`)."),
        (503, "Stripe is unavailable (`dependency_unavailable`)."),
    ),
}


class CheckStatus(BaseModel):
    """Whether the acting account can start a run now, and why not."""

    can_run: bool
    code: str | None = Field(None, description="`billing_limit` or `model_not_allowed` when not")
    message: str
    plan: str
    billing_enabled: bool
    spent_usd: float
    limit_usd: float | None
    period_start: datetime
    period_end: datetime


class ModelEntry(BaseModel):
    id: str
    is_default: bool = False


class AvailableModels(BaseModel):
    plan: str
    default_model: str
    allowed_patterns: list[str]
    models: list[ModelEntry]


class SubscriptionRead(BaseModel):
    """The acting account's plan, subscription state (from the last Stripe webhooks) and spend."""

    account_id: uuid.UUID
    billing_enabled: bool
    plan: str
    plan_display_name: str
    status: str | None = Field(None, description="Stripe subscription status, if subscribed")
    stripe_customer_id: str | None = None
    stripe_subscription_id: str | None = None
    cancel_at_period_end: bool = False
    period_start: datetime
    period_end: datetime
    spent_usd: float
    limit_usd: float | None
    max_concurrent_runs: int | None


class UsageRowRead(BaseModel):
    key: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    exec_seconds: float = 0.0
    entries: int = 0


class UsageTotal(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    exec_seconds: float = 0.0
    entries: int = 0


class UsageReport(BaseModel):
    """Ledger totals of the acting account in ``[from, to)``."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    from_: datetime = Field(alias="from")
    to: datetime
    group_by: GroupBy
    rows: list[UsageRowRead]
    total: UsageTotal


class CheckoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    success_url: Url
    cancel_url: Url


class CheckoutSession(BaseModel):
    session_id: str
    url: str


class PortalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    return_url: Url | None = Field(None, description="default: SHOAL_PUBLIC_URL")


class PortalSession(BaseModel):
    url: str


class WebhookAck(BaseModel):
    received: bool = True
    applied: bool = Field(description="false when the event was seen before or is not handled")
