"""Billing: the append-only usage ledger, per-account subscription state, processed webhooks.

The ledger outlives what it meters: project, thread and run ids are plain columns, not foreign
keys, so deleting a project (which cascades to its threads and runs) never deletes a charge.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from shoal.db.base import Base, TimestampMixin
from shoal.kit.ids import new_id
from shoal.kit.time import utcnow

USAGE_KINDS = ("llm", "exec")


class UsageEntry(Base):
    """One metered cost: an LLM call (tokens) or a sandbox exec (seconds). Never updated.

    ``idempotency_key`` makes recording safe to repeat: the worker derives it from the usage
    event (``"{run_id}:{seq}"``), so a retried write is a no-op instead of a double charge.
    """

    __tablename__ = "usage_ledger"
    __table_args__ = (
        CheckConstraint("kind IN ('llm', 'exec')", name="kind"),
        Index("ix_usage_ledger_account_id_created_at", "account_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.account_id", ondelete="CASCADE")
    )
    # Plain ids on purpose (no foreign keys): the ledger survives deleted projects and runs.
    project_id: Mapped[uuid.UUID | None]
    thread_id: Mapped[uuid.UUID | None]
    run_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    attempt: Mapped[int | None]
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    exec_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BillingSubscription(TimestampMixin, Base):
    """An account's Stripe customer and subscription, as last told by Stripe's webhooks.

    ``last_event_at`` is the ``created`` time of the newest event applied: an older event that
    arrives late is ignored, so out-of-order delivery ends in Stripe's latest state.
    """

    __tablename__ = "billing_subscriptions"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.account_id", ondelete="CASCADE"), primary_key=True
    )
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str | None] = mapped_column(String(32))
    plan: Mapped[str | None] = mapped_column(String(64))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    last_event_at: Mapped[datetime | None]


class BillingWebhookEvent(Base):
    """A Stripe event id already applied: each event changes state at most once."""

    __tablename__ = "billing_webhook_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
