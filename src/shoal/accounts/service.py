"""Accounts, members and API keys. No FastAPI here.

Administration — creating team accounts, changing members, managing API keys — needs a
signed-in user (a JWT): an API key can use its account but never widen who can, so a leaked
key cannot mint more keys or add an owner. Users and sign-in sessions: ``accounts.identity``.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.accounts.admin import ensure_active
from shoal.accounts.identity import require_user
from shoal.accounts.repository import AccountRepository
from shoal.accounts.schemas import (
    AccountList,
    AccountRead,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyRead,
    MemberList,
    MemberRead,
    Role,
)
from shoal.auth.principal import Principal
from shoal.auth.secrets import hash_secret, new_api_key
from shoal.db.models import Account
from shoal.errors import Conflict, Forbidden, NotFound
from shoal.kit.ids import parse_id
from shoal.kit.pagination import TimeCursor

API_KEY_PREFIX_LENGTH = 16


# -- accounts ---------------------------------------------------------------------------------


def _account_out(account: Account, role: str) -> AccountRead:
    return AccountRead(
        account_id=account.account_id,
        name=account.name,
        personal=account.personal,
        role=role,
        created_at=account.created_at,
        updated_at=account.updated_at,
        suspended_at=account.suspended_at,
    )


def _page_cursor(cursor: str | None) -> TimeCursor | None:
    return TimeCursor.decode(cursor) if cursor is not None else None


async def list_accounts(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> AccountList:
    rows = await AccountRepository(session).accounts_of(
        principal, limit=limit + 1, cursor=_page_cursor(cursor)
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1][0]
        next_cursor = TimeCursor(last.created_at, last.account_id).encode()
    return AccountList(
        accounts=[_account_out(account, role) for account, role in page], next_cursor=next_cursor
    )


async def create_account(session: AsyncSession, principal: Principal, *, name: str) -> AccountRead:
    require_user(principal)
    # A suspended user could otherwise carry on under a fresh team account.
    await ensure_active(session, principal.personal_account_id)
    account = await AccountRepository(session).create_account(name=name, owner_id=principal.user_id)
    return _account_out(account, "owner")


async def member_account(
    session: AsyncSession, principal: Principal, *, account_id: str | uuid.UUID
) -> tuple[Account, str]:
    """The account and the caller's role; 404 unless the caller is a member."""
    parsed = parse_id(account_id)
    found = (
        await AccountRepository(session).account_with_role(principal, parsed) if parsed else None
    )
    if found is None:
        raise NotFound("Account not found.")
    return found


def account_out(account: Account, role: str) -> AccountRead:
    return _account_out(account, role)


def _require_owner(principal: Principal, role: str, action: str) -> None:
    require_user(principal)
    if role != "owner":
        raise Forbidden(f"Only owners of this account can {action}.")


async def list_members(
    session: AsyncSession, *, account: Account, limit: int, cursor: str | None
) -> MemberList:
    rows = await AccountRepository(session).members(
        account.account_id, limit=limit + 1, cursor=_page_cursor(cursor)
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1][0]
        next_cursor = TimeCursor(last.created_at, last.user_id).encode()
    members = [
        MemberRead(user_id=m.user_id, email=u.email, role=m.role, created_at=m.created_at)
        for m, u in page
    ]
    return MemberList(members=members, next_cursor=next_cursor)


async def put_member(
    session: AsyncSession,
    principal: Principal,
    *,
    account: Account,
    role: str,
    user_id: uuid.UUID,
    new_role: Role,
) -> tuple[MemberRead, bool]:
    """Add ``user_id`` with ``new_role`` or change their role (owners only).

    Returns the member and whether they were added.
    """
    _require_owner(principal, role, "manage its members")
    repo = AccountRepository(session)
    user = await repo.get_user(user_id)
    if user is None:
        raise NotFound("User not found.")
    existing = await repo.get_member(account.account_id, user_id)
    if account.personal and user_id != account.primary_owner_user_id:
        raise Conflict("A personal account has no other members; create a team account.")
    if (
        existing is not None
        and existing.role == "owner"
        and new_role != "owner"
        and await repo.count_owners(account.account_id) <= 1
    ):
        raise Conflict("An account needs at least one owner; make someone else owner first.")
    member, created = await repo.upsert_member(account.account_id, user_id, new_role)
    read = MemberRead(
        user_id=user_id, email=user.email, role=new_role, created_at=member.created_at
    )
    return read, created


async def remove_member(
    session: AsyncSession,
    principal: Principal,
    *,
    account: Account,
    role: str,
    user_id: str,
) -> None:
    """Owners remove anyone; a member may remove themself. The last owner stays."""
    require_user(principal)
    target = parse_id(user_id)
    if target is None:
        raise NotFound("Member not found.")
    if target != principal.user_id:
        _require_owner(principal, role, "remove other members")
    repo = AccountRepository(session)
    member = await repo.get_member(account.account_id, target)
    if member is None:
        raise NotFound("Member not found.")
    if account.personal and target == account.primary_owner_user_id:
        raise Conflict("The owner of a personal account cannot be removed.")
    if member.role == "owner" and await repo.count_owners(account.account_id) <= 1:
        raise Conflict("The last owner of an account cannot be removed.")
    await repo.remove_member(account.account_id, target)


# -- API keys ---------------------------------------------------------------------------------


async def _owned_account(
    session: AsyncSession, principal: Principal, account_id: uuid.UUID
) -> uuid.UUID:
    require_user(principal)
    role = await AccountRepository(session).member_role(account_id, principal.user_id)
    if role is None:
        raise NotFound("Account not found.")
    if role != "owner":
        raise Forbidden("Only owners of this account can manage its API keys.")
    return account_id


async def create_api_key(
    session: AsyncSession, principal: Principal, *, account_id: uuid.UUID, name: str
) -> ApiKeyCreated:
    """A new key for ``account_id`` (owners only); the secret is returned once, stored hashed."""
    await _owned_account(session, principal, account_id)
    secret = new_api_key()
    key = await AccountRepository(session).create_api_key(
        account_id=account_id,
        created_by_user_id=principal.user_id,
        name=name,
        prefix=secret[:API_KEY_PREFIX_LENGTH],
        secret_hash=hash_secret(secret),
    )
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), secret=secret)


async def list_api_keys(
    session: AsyncSession,
    principal: Principal,
    *,
    account_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> ApiKeyList:
    await _owned_account(session, principal, account_id)
    keys = await AccountRepository(session).api_keys(
        account_id, limit=limit + 1, cursor=_page_cursor(cursor)
    )
    page = keys[:limit]
    next_cursor = None
    if len(keys) > limit:
        next_cursor = TimeCursor(page[-1].created_at, page[-1].key_id).encode()
    return ApiKeyList(
        api_keys=[ApiKeyRead.model_validate(key) for key in page], next_cursor=next_cursor
    )


async def delete_api_key(session: AsyncSession, principal: Principal, *, key_id: str) -> None:
    """Delete a key of one of the caller's accounts (owners only); it stops working at once."""
    repo = AccountRepository(session)
    parsed = parse_id(key_id)
    key = await repo.readable_api_key(principal, parsed) if parsed else None
    if key is None:
        raise NotFound("API key not found.")
    await _owned_account(session, principal, key.account_id)
    await repo.delete_api_key(key)
