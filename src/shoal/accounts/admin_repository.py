"""SQL for operators: every account regardless of membership, and the suspension flag.

No tenant filter here on purpose — only the operator CLI (which has the database itself)
reaches these queries; HTTP routes use :class:`~shoal.accounts.repository.AccountRepository`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from shoal.db.models import Account, AccountMember, User
from shoal.db.repository import RepositoryBase
from shoal.kit.time import utcnow


@dataclass(frozen=True, slots=True)
class AccountRow:
    account: Account
    owner_email: str | None
    members: int


class AccountAdminRepository(RepositoryBase):
    async def list_accounts(
        self, *, limit: int, suspended_only: bool = False
    ) -> Sequence[AccountRow]:
        """Accounts newest first, with the primary owner's email and the member count."""
        members = (
            select(func.count())
            .where(AccountMember.account_id == Account.account_id)
            .correlate(Account)
            .scalar_subquery()
        )
        query = (
            select(Account, User.email, members.label("members"))
            .join(User, User.id == Account.primary_owner_user_id)
            .order_by(Account.created_at.desc(), Account.account_id.desc())
            .limit(limit)
        )
        if suspended_only:
            query = query.where(Account.suspended_at.is_not(None))
        rows = (await self.session.execute(query)).all()
        return [AccountRow(row[0], row[1], int(row[2])) for row in rows]

    async def get(self, account_id: uuid.UUID, *, for_update: bool = False) -> Account | None:
        query = select(Account).where(Account.account_id == account_id)
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def suspension(self, account_id: uuid.UUID) -> tuple[datetime, str | None] | None:
        """``(suspended_at, reason)`` when the account is suspended, else ``None``."""
        result = await self.session.execute(
            select(Account.suspended_at, Account.suspended_reason).where(
                Account.account_id == account_id, Account.suspended_at.is_not(None)
            )
        )
        row = result.one_or_none()
        return None if row is None or row[0] is None else (row[0], row[1])

    async def set_suspension(
        self, account: Account, *, suspended: bool, reason: str | None
    ) -> None:
        now = utcnow()
        await self.session.execute(
            update(Account)
            .where(Account.account_id == account.account_id)
            .values(
                suspended_at=now if suspended else None,
                suspended_reason=reason if suspended else None,
                updated_at=now,
            )
        )
        await self.session.refresh(account)
