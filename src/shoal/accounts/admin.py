"""Operator actions on accounts (the `shoal accounts …` commands) and the suspension check.

A suspended account keeps its data and its members keep signing in: they can read, stop runs
and delete things (to export or clean up), but nothing that creates or spends is accepted —
creates acting for the account, run starts, and any use of the account's API keys answer
403 ``forbidden``. Stopping the account's active runs is the runs layer's part of
``shoal accounts suspend`` (:func:`shoal.runs.admin.suspend_account`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.accounts.admin_repository import AccountAdminRepository, AccountRow
from shoal.db.models import Account
from shoal.errors import BadRequest, Forbidden, NotFound
from shoal.kit.ids import parse_id

MAX_REASON_LENGTH = 500


class AccountSuspended(Forbidden):
    """403 ``forbidden``: the account was suspended by an operator."""

    def __init__(self, account_id: uuid.UUID, reason: str | None) -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(
            f"Account {account_id} is suspended{because}: it cannot create, run or use API "
            "keys until an operator lifts the suspension. Reads still work."
        )


async def ensure_active(session: AsyncSession, account_id: uuid.UUID) -> None:
    """Raise :class:`AccountSuspended` when ``account_id`` is suspended (one indexed read)."""
    found = await AccountAdminRepository(session).suspension(account_id)
    if found is not None:
        raise AccountSuspended(account_id, found[1])


async def list_accounts(
    session: AsyncSession, *, limit: int, suspended_only: bool = False
) -> Sequence[AccountRow]:
    if not 1 <= limit <= 10_000:
        raise BadRequest("--limit must be between 1 and 10000.")
    return await AccountAdminRepository(session).list_accounts(
        limit=limit, suspended_only=suspended_only
    )


async def get_account(
    session: AsyncSession, account_id: str | uuid.UUID, *, for_update: bool = False
) -> Account:
    """Any account by id (no tenancy: operators only); 404 with the id otherwise."""
    parsed = parse_id(account_id)
    if parsed is None:
        raise NotFound(f"{account_id!r} is not an account id (a UUID).")
    account = await AccountAdminRepository(session).get(parsed, for_update=for_update)
    if account is None:
        raise NotFound(f"No account {parsed}.")
    return account


async def suspend(
    session: AsyncSession, account_id: str | uuid.UUID, *, reason: str | None
) -> tuple[Account, bool]:
    """Flag the account suspended; returns it and whether it was active before.

    Suspending again keeps the first ``suspended_at`` and replaces the reason when one is given.
    """
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise BadRequest(f"The reason is longer than {MAX_REASON_LENGTH} characters.")
    account = await get_account(session, account_id, for_update=True)
    was_active = account.suspended_at is None
    if was_active or reason is not None:
        repo = AccountAdminRepository(session)
        if was_active:
            await repo.set_suspension(account, suspended=True, reason=reason)
        else:
            account.suspended_reason = reason
            await session.flush()
    return account, was_active


async def unsuspend(session: AsyncSession, account_id: str | uuid.UUID) -> tuple[Account, bool]:
    """Lift a suspension; returns the account and whether it was suspended."""
    account = await get_account(session, account_id, for_update=True)
    was_suspended = account.suspended_at is not None
    if was_suspended:
        await AccountAdminRepository(session).set_suspension(account, suspended=False, reason=None)
    return account, was_suspended
