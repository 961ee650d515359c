"""Operator actions on plans (`shoal accounts set-plan`, the plan column of `accounts list`).

An operator-assigned plan is stored like a subscription without Stripe ids: status ``active``
and the plan's name, billed by UTC calendar month. Stripe stays the source of truth for
accounts it bills: an account with a live Stripe subscription is refused (change it in
Stripe), and a later Stripe subscription replaces the operator's plan through its webhook.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.accounts import admin as account_admin
from shoal.accounts.admin_repository import AccountRow
from shoal.billing.plans import PlanBook, plan_book
from shoal.billing.repository import BillingRepository
from shoal.billing.service import GOOD_STANDING, standing
from shoal.config import Settings
from shoal.errors import BadRequest, Conflict


@dataclass(frozen=True, slots=True)
class PlanChange:
    account_id: uuid.UUID
    previous: str
    plan: str
    billing_enabled: bool


@dataclass(frozen=True, slots=True)
class AccountOverview:
    row: AccountRow
    plan: str


def configured_plans(settings: Settings) -> PlanBook:
    """The plans file's plans even while billing is off, so an operator can assign them
    before turning billing on (``plan_book`` alone only knows ``unlimited`` then)."""
    if settings.billing_enabled:
        return plan_book(settings)
    return plan_book(settings.model_copy(update={"billing_enabled": True}))


async def set_plan(
    session: AsyncSession, *, settings: Settings, account_id: str | uuid.UUID, plan: str
) -> PlanChange:
    """Put the account on ``plan`` (a plan of the plans file); 400 for an unknown plan,
    409 when Stripe bills the account."""
    book = configured_plans(settings)
    chosen = book.get(plan.strip())
    if chosen is None:
        names = ", ".join(sorted(book.plans))
        raise BadRequest(f"No plan {plan!r} in the plans file; plans are: {names}.")
    account = await account_admin.get_account(session, account_id)
    previous = (await standing(session, account.account_id, settings=settings)).plan.name
    repo = BillingRepository(session)
    row = await repo.ensure_subscription(account.account_id)
    if row.stripe_subscription_id and row.status in GOOD_STANDING:
        raise Conflict(
            f"Account {account.account_id} has a Stripe subscription ({row.plan}, "
            f"{row.status}); change its plan in Stripe (or the billing portal)."
        )
    row.plan = chosen.name
    row.status = "active"
    row.current_period_start = None
    row.current_period_end = None
    await repo.flush()
    return PlanChange(account.account_id, previous, chosen.name, settings.billing_enabled)


async def accounts_overview(
    session: AsyncSession, *, settings: Settings, limit: int, suspended_only: bool = False
) -> Sequence[AccountOverview]:
    """Accounts newest first with the plan each is on now (``unlimited`` with billing off)."""
    rows = await account_admin.list_accounts(session, limit=limit, suspended_only=suspended_only)
    out: list[AccountOverview] = []
    for row in rows:
        now = await standing(session, row.account.account_id, settings=settings)
        out.append(AccountOverview(row, now.plan.name))
    return out
