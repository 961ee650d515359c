"""All billing SQL: the usage ledger, subscription state and processed webhook events.

Idempotent writes use the dialect's ``INSERT … ON CONFLICT DO NOTHING … RETURNING`` so a
duplicate is a no-op on SQLite and Postgres alike, even between concurrent writers.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects import postgresql, sqlite

from shoal.db.models import BillingSubscription, BillingWebhookEvent, UsageEntry
from shoal.db.repository import RepositoryBase

GroupBy = Literal["day", "model", "thread"]


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_micro_usd: int
    exec_seconds: float
    entries: int


class BillingRepository(RepositoryBase):
    def _insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        if self.session.get_bind().dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # -- ledger -----------------------------------------------------------------------------------
    async def add_usage(self, values: dict[str, Any]) -> bool:
        """Append one ledger row; False (and nothing written) when its key was recorded before."""
        stmt = (
            self._insert(UsageEntry)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(UsageEntry.id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None

    async def spend(self, account_id: uuid.UUID, start: datetime, end: datetime) -> int:
        """Micro-USD recorded for ``account_id`` in ``[start, end)``."""
        stmt = select(func.coalesce(func.sum(UsageEntry.cost_micro_usd), 0)).where(
            UsageEntry.account_id == account_id,
            UsageEntry.created_at >= start,
            UsageEntry.created_at < end,
        )
        return int((await self.session.execute(stmt)).scalar_one())

    def _day(self) -> ColumnElement[Any]:
        if self.session.get_bind().dialect.name == "postgresql":
            return func.to_char(func.timezone("UTC", UsageEntry.created_at), "YYYY-MM-DD")
        return func.strftime("%Y-%m-%d", UsageEntry.created_at)

    async def usage(
        self, account_id: uuid.UUID, start: datetime, end: datetime, group_by: GroupBy
    ) -> Sequence[UsageRow]:
        """Ledger totals of ``account_id`` in ``[start, end)``, one row per day/model/thread."""
        key: Any = {
            "day": self._day(),
            "model": UsageEntry.model,
            "thread": UsageEntry.thread_id,
        }[group_by]
        stmt = (
            select(
                key.label("key"),
                func.coalesce(func.sum(UsageEntry.prompt_tokens), 0),
                func.coalesce(func.sum(UsageEntry.completion_tokens), 0),
                func.coalesce(func.sum(UsageEntry.cost_micro_usd), 0),
                func.coalesce(func.sum(UsageEntry.exec_seconds), 0.0),
                func.count(),
            )
            .where(
                UsageEntry.account_id == account_id,
                UsageEntry.created_at >= start,
                UsageEntry.created_at < end,
            )
            .group_by(key)
        )
        rows = (await self.session.execute(stmt)).all()
        return [
            UsageRow(
                key=None if row[0] is None else str(row[0]),
                prompt_tokens=int(row[1]),
                completion_tokens=int(row[2]),
                cost_micro_usd=int(row[3]),
                exec_seconds=float(row[4]),
                entries=int(row[5]),
            )
            for row in rows
        ]

    async def entries_for_run(self, run_id: uuid.UUID) -> Sequence[UsageEntry]:
        stmt = select(UsageEntry).where(UsageEntry.run_id == run_id).order_by(UsageEntry.created_at)
        return (await self.session.execute(stmt)).scalars().all()

    # -- subscriptions ----------------------------------------------------------------------------
    async def subscription(
        self, account_id: uuid.UUID, *, for_update: bool = False
    ) -> BillingSubscription | None:
        stmt = select(BillingSubscription).where(BillingSubscription.account_id == account_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def subscription_by_customer(
        self, customer_id: str, *, for_update: bool = False
    ) -> BillingSubscription | None:
        stmt = select(BillingSubscription).where(
            BillingSubscription.stripe_customer_id == customer_id
        )
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def ensure_subscription(self, account_id: uuid.UUID) -> BillingSubscription:
        """The account's subscription row, created empty if absent; locked (Postgres)."""
        stmt = (
            self._insert(BillingSubscription)
            .values(account_id=account_id, cancel_at_period_end=False)
            .on_conflict_do_nothing(index_elements=["account_id"])
        )
        await self.session.execute(stmt)
        row = await self.subscription(account_id, for_update=True)
        assert row is not None
        await self.session.refresh(row)
        return row

    async def flush(self) -> None:
        await self.session.flush()

    # -- webhook events ---------------------------------------------------------------------------
    async def event_seen(self, event_id: str) -> bool:
        stmt = select(BillingWebhookEvent.event_id).where(BillingWebhookEvent.event_id == event_id)
        return (await self.session.execute(stmt)).first() is not None

    async def claim_event(self, event_id: str, event_type: str) -> bool:
        """Record ``event_id`` as applied; False when it already was (apply nothing then)."""
        stmt = (
            self._insert(BillingWebhookEvent)
            .values(event_id=event_id, type=event_type[:100])
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(BillingWebhookEvent.event_id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None
