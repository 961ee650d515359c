"""Accounts, members and API keys (``/api``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from shoal.accounts import service as account_service
from shoal.accounts.deps import ActingAccount, CurrentPrincipal, MemberAccount
from shoal.accounts.schemas import (
    AccountCreate,
    AccountList,
    AccountRead,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    MemberCreate,
    MemberList,
    MemberRead,
)
from shoal.db.deps import SessionDep
from shoal.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(tags=["accounts"])

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]


@router.get("/accounts")
async def list_accounts(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> AccountList:
    """Accounts you belong to, with your role in each (newest first)."""
    return await account_service.list_accounts(session, principal, limit=limit, cursor=cursor)


@router.post("/accounts", status_code=status.HTTP_201_CREATED)
async def create_account(
    body: AccountCreate, principal: CurrentPrincipal, session: SessionDep
) -> AccountRead:
    """Create a team account; you become its owner."""
    return await account_service.create_account(session, principal, name=body.name)


@router.get("/accounts/{account_id}")
async def get_account(access: MemberAccount) -> AccountRead:
    """One of your accounts, with your role in it."""
    return account_service.account_out(access.account, access.role)


@router.get("/accounts/{account_id}/members")
async def list_members(
    access: MemberAccount,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> MemberList:
    """Members of the account (any member may read them)."""
    return await account_service.list_members(
        session, account=access.account, limit=limit, cursor=cursor
    )


@router.post("/accounts/{account_id}/members", status_code=status.HTTP_201_CREATED)
async def put_member(
    body: MemberCreate,
    access: MemberAccount,
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
) -> MemberRead:
    """Add a user (201) or change a member's role (200). Owners only."""
    member, created = await account_service.put_member(
        session,
        principal,
        account=access.account,
        role=access.role,
        user_id=body.user_id,
        new_role=body.role,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return member


@router.delete("/accounts/{account_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    user_id: str, access: MemberAccount, principal: CurrentPrincipal, session: SessionDep
) -> None:
    """Remove a member (owners), or leave the account yourself. The last owner stays (409)."""
    await account_service.remove_member(
        session, principal, account=access.account, role=access.role, user_id=user_id
    )


@router.post("/api-keys", status_code=status.HTTP_201_CREATED)
async def create_api_key(
    body: ApiKeyCreate, account_id: ActingAccount, principal: CurrentPrincipal, session: SessionDep
) -> ApiKeyCreated:
    """Create an API key for the acting account (owners, signed in). ``secret`` is shown once."""
    return await account_service.create_api_key(
        session, principal, account_id=account_id, name=body.name
    )


@router.get("/api-keys")
async def list_api_keys(
    account_id: ActingAccount,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ApiKeyList:
    """API keys of the acting account (owners, signed in), newest first; never their secrets."""
    return await account_service.list_api_keys(
        session, principal, account_id=account_id, limit=limit, cursor=cursor
    )


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_api_key(key_id: str, principal: CurrentPrincipal, session: SessionDep) -> None:
    """Delete an API key of one of your accounts (owners, signed in); it stops working at once."""
    await account_service.delete_api_key(session, principal, key_id=key_id)
