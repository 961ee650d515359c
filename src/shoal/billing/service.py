"""Usage ledger, plans in force, limits and usage reports (no FastAPI, no Stripe).

What the run path calls — all of it reads only the database, never Stripe:

* before accepting a run: :func:`check_can_start` (402 ``billing_limit`` / ``model_not_allowed``)
  and :func:`concurrency_cap` (the plan's cap; ``None``: use the setting);
* after every LLM call: :func:`record_llm_usage`, then :func:`over_limit` (stop the run with
  ``billing_limit`` when true);
* after every sandbox exec: :func:`record_exec_usage`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.accounts import admin as account_admin
from shoal.billing.plans import MICRO, Plan, plan_book, resolve_model
from shoal.billing.repository import BillingRepository
from shoal.billing.schemas import (
    AvailableModels,
    CheckStatus,
    GroupBy,
    ModelEntry,
    SubscriptionRead,
    UsageReport,
    UsageRowRead,
    UsageTotal,
)
from shoal.config import Settings
from shoal.db.models import BillingSubscription
from shoal.errors import BadRequest, ModelNotAllowed, PaymentRequired
from shoal.kit.time import as_utc, utcnow

GOOD_STANDING = frozenset({"active", "trialing"})
NO_MODEL_KEY = {"model": "sandbox", "thread": "none", "day": "none"}


def to_micro(usd: float) -> int:
    return round(usd * MICRO)


def to_usd(micro: int) -> float:
    return micro / MICRO


def calendar_month(now: datetime) -> tuple[datetime, datetime]:
    """``[first instant of this UTC month, first instant of the next)``."""
    start = as_utc(now).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


@dataclass(frozen=True, slots=True)
class Standing:
    """The plan an account is on right now and the billing period its spend counts in."""

    plan: Plan
    period_start: datetime
    period_end: datetime
    subscription: BillingSubscription | None
    billing_enabled: bool


async def standing(session: AsyncSession, account_id: uuid.UUID, *, settings: Settings) -> Standing:
    """Plan and period from the database only (the run path never waits on Stripe)."""
    book = plan_book(settings)
    now = utcnow()
    start, end = calendar_month(now)
    if not book.enabled:
        return Standing(book.default_plan, start, end, None, False)
    sub = await BillingRepository(session).subscription(account_id)
    plan = book.default_plan
    if sub is not None and sub.status in GOOD_STANDING:
        plan = book.get(sub.plan) or plan
        period = (sub.current_period_start, sub.current_period_end)
        if period[0] is not None and period[1] is not None and period[0] <= now < period[1]:
            start, end = period[0], period[1]
    return Standing(plan, start, end, sub, True)


# -- ledger ---------------------------------------------------------------------------------------


async def record_llm_usage(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    project_id: uuid.UUID | None,
    thread_id: uuid.UUID | None,
    run_id: uuid.UUID | None,
    attempt: int | None,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float,
    estimated: bool,
    key: str,
) -> bool:
    """Append one LLM call to the ledger; a repeated ``key`` is a no-op (returns False)."""
    return await BillingRepository(session).add_usage(
        {
            "idempotency_key": key,
            "kind": "llm",
            "account_id": account_id,
            "project_id": project_id,
            "thread_id": thread_id,
            "run_id": run_id,
            "attempt": attempt,
            "model": model[:200],
            "prompt_tokens": max(0, int(prompt_tokens)),
            "completion_tokens": max(0, int(completion_tokens)),
            "cost_micro_usd": max(0, to_micro(cost_usd)),
            "estimated": estimated,
        }
    )


async def record_exec_usage(
    session: AsyncSession,
    *,
    settings: Settings,
    account_id: uuid.UUID,
    project_id: uuid.UUID | None,
    thread_id: uuid.UUID | None,
    run_id: uuid.UUID | None,
    attempt: int | None,
    seconds: float,
    key: str,
) -> bool:
    """Append one sandbox exec (seconds × ``SHOAL_SANDBOX_USD_PER_SECOND``); idempotent by key."""
    seconds = max(0.0, float(seconds))
    return await BillingRepository(session).add_usage(
        {
            "idempotency_key": key,
            "kind": "exec",
            "account_id": account_id,
            "project_id": project_id,
            "thread_id": thread_id,
            "run_id": run_id,
            "attempt": attempt,
            "exec_seconds": seconds,
            "cost_micro_usd": to_micro(seconds * settings.sandbox_usd_per_second),
        }
    )


async def spend_this_period(
    session: AsyncSession, account_id: uuid.UUID, *, settings: Settings
) -> int:
    """Micro-USD the account has spent in its current billing period."""
    now = await standing(session, account_id, settings=settings)
    return await BillingRepository(session).spend(account_id, now.period_start, now.period_end)


async def over_limit(session: AsyncSession, account_id: uuid.UUID, *, settings: Settings) -> bool:
    """True once the period's spend reached the plan's limit (never with billing off)."""
    now = await standing(session, account_id, settings=settings)
    limit = now.plan.limit_micro_usd
    if limit is None:
        return False
    spent = await BillingRepository(session).spend(account_id, now.period_start, now.period_end)
    return spent >= limit


# -- limits ---------------------------------------------------------------------------------------


async def check_can_start(
    session: AsyncSession, *, settings: Settings, account_id: uuid.UUID, model_name: str
) -> None:
    """Raise 403 ``forbidden`` (account suspended), 402 ``billing_limit`` (spend limit
    reached) or ``model_not_allowed``. Every run start passes here, billing on or off."""
    await account_admin.ensure_active(session, account_id)
    plan = (await standing(session, account_id, settings=settings)).plan
    if plan.limit_micro_usd is None:  # no spend limit: the period's spend is not needed
        if not plan.allows(resolve_model(settings, model_name)):
            raise ModelNotAllowed(
                f"The {plan.name} plan does not include the model {model_name!r}.",
                extra={"allowed_models": list(plan.models)},
            )
        return
    status, now = await _status(session, settings, account_id, model_name)
    if status.code == "billing_limit":
        raise PaymentRequired(status.message)
    if status.code == "model_not_allowed":
        raise ModelNotAllowed(status.message, extra={"allowed_models": list(now.plan.models)})


async def concurrency_cap(
    session: AsyncSession, account_id: uuid.UUID, *, settings: Settings
) -> int | None:
    """The plan's cap on queued + running runs; ``None``: use SHOAL_MAX_ACTIVE_RUNS_PER_ACCOUNT."""
    return (await standing(session, account_id, settings=settings)).plan.max_concurrent_runs


async def check_status(
    session: AsyncSession,
    *,
    settings: Settings,
    account_id: uuid.UUID,
    model: str | None = None,
) -> CheckStatus:
    """``{can_run, code, message, plan}`` for the account (and ``model``, when given)."""
    return (await _status(session, settings, account_id, model))[0]


async def _status(
    session: AsyncSession, settings: Settings, account_id: uuid.UUID, model: str | None
) -> tuple[CheckStatus, Standing]:
    now = await standing(session, account_id, settings=settings)
    plan = now.plan
    spent = await BillingRepository(session).spend(account_id, now.period_start, now.period_end)
    limit = plan.limit_micro_usd
    code: str | None = None
    message = "OK"
    if limit is not None and spent >= limit:
        code = "billing_limit"
        message = (
            f"The {plan.name} plan's limit of ${to_usd(limit):.2f} for this billing period is "
            f"used up (${to_usd(spent):.2f} spent); it resets on "
            f"{now.period_end:%Y-%m-%d %H:%M} UTC, or upgrade your plan."
        )
    elif model is not None and not plan.allows(resolve_model(settings, model)):
        code = "model_not_allowed"
        message = f"The {plan.name} plan does not include the model {model!r}."
    status = CheckStatus(
        can_run=code is None,
        code=code,
        message=message,
        plan=plan.name,
        billing_enabled=now.billing_enabled,
        spent_usd=to_usd(spent),
        limit_usd=plan.monthly_limit_usd,
        period_start=now.period_start,
        period_end=now.period_end,
    )
    return status, now


async def available_models(
    session: AsyncSession, *, settings: Settings, account_id: uuid.UUID
) -> AvailableModels:
    """The catalogue's models the account's plan allows, the default model first."""
    plan = (await standing(session, account_id, settings=settings)).plan
    default = settings.effective_default_model
    names = [default, *plan_book(settings).catalogue]
    seen: set[str] = set()
    models: list[ModelEntry] = []
    for name in names:
        if name in seen or not plan.allows(resolve_model(settings, name)):
            continue
        seen.add(name)
        models.append(ModelEntry(id=name, is_default=name == default))
    return AvailableModels(
        plan=plan.name, default_model=default, allowed_patterns=list(plan.models), models=models
    )


async def subscription(
    session: AsyncSession, *, settings: Settings, account_id: uuid.UUID
) -> SubscriptionRead:
    now = await standing(session, account_id, settings=settings)
    spent = await BillingRepository(session).spend(account_id, now.period_start, now.period_end)
    sub = now.subscription
    return SubscriptionRead(
        account_id=account_id,
        billing_enabled=now.billing_enabled,
        plan=now.plan.name,
        plan_display_name=now.plan.display_name or now.plan.name,
        status=sub.status if sub else None,
        stripe_customer_id=sub.stripe_customer_id if sub else None,
        stripe_subscription_id=sub.stripe_subscription_id if sub else None,
        cancel_at_period_end=bool(sub and sub.cancel_at_period_end),
        period_start=now.period_start,
        period_end=now.period_end,
        spent_usd=to_usd(spent),
        limit_usd=now.plan.monthly_limit_usd,
        max_concurrent_runs=now.plan.max_concurrent_runs,
    )


# -- usage reports --------------------------------------------------------------------------------


async def usage_report(
    session: AsyncSession,
    *,
    settings: Settings,
    account_id: uuid.UUID,
    start: datetime | None,
    end: datetime | None,
    group_by: GroupBy,
) -> UsageReport:
    """Ledger totals in ``[start, end)`` (default: the current billing period)."""
    if start is None or end is None:
        now = await standing(session, account_id, settings=settings)
        start = start or now.period_start
        end = end or now.period_end
    try:
        start, end = as_utc(start), as_utc(end)
    except OverflowError:
        raise BadRequest("`from` and `to` must be within years 1–9999 in UTC.") from None
    if end <= start:
        raise BadRequest("`to` must be after `from`.")
    rows = await BillingRepository(session).usage(account_id, start, end, group_by)
    out = [
        UsageRowRead(
            key=row.key if row.key is not None else NO_MODEL_KEY[group_by],
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            cost_usd=to_usd(row.cost_micro_usd),
            exec_seconds=row.exec_seconds,
            entries=row.entries,
        )
        for row in rows
    ]
    if group_by == "day":
        out.sort(key=lambda r: r.key)
    else:
        out.sort(key=lambda r: (-r.cost_usd, -(r.prompt_tokens + r.completion_tokens), r.key))
    total = UsageTotal(
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cost_usd=to_usd(sum(r.cost_micro_usd for r in rows)),
        exec_seconds=sum(r.exec_seconds for r in rows),
        entries=sum(r.entries for r in rows),
    )
    return UsageReport(from_=start, to=end, group_by=group_by, rows=out, total=total)
