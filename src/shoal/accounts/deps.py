"""Who is calling, and for which account: the auth dependencies every router uses.

``Authorization: Bearer <JWT | shoal_sk_…>`` or ``X-API-Key: shoal_sk_…``. Routes serving
browsers' EventSource/downloads also accept ``?token=<JWT>`` (JWTs only) via
:data:`OptionalQueryTokenPrincipal`. Anything present but invalid is a 401 — never silently
anonymous.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shoal.accounts import service as account_service
from shoal.accounts.admin import ensure_active
from shoal.accounts.repository import AccountRepository
from shoal.auth.principal import Principal
from shoal.auth.secrets import hash_secret, looks_like_api_key
from shoal.auth.tokens import SupabaseVerifier, TokenError, TokenIssuer
from shoal.db.deps import ReadSessionDep, SessionDep
from shoal.db.models import Account
from shoal.errors import NotFound, Unauthorized
from shoal.kit.ids import parse_id


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Authorization header must be 'Bearer <token>'.")
        return value.strip()
    api_key = request.headers.get("x-api-key")
    return api_key.strip() if api_key else None


async def authenticate(
    session: SessionDep, request: Request, token: str, *, reads: AsyncSession | None = None
) -> Principal:
    """Resolve a bearer token or API key to a Principal, or raise 401. Lookups go through
    ``reads`` (a read-only session: on SQLite it never waits for the write lock); the rare
    writes (an API key's ``last_used_at``, a Supabase user's first sight) through ``session``."""
    repo = AccountRepository(reads or session)
    if looks_like_api_key(token):
        key = await repo.api_key_by_hash(hash_secret(token))
        if key is None or await repo.member_role(key.account_id, key.created_by_user_id) is None:
            raise Unauthorized("Invalid API key.")
        # a suspended account's keys do nothing
        await ensure_active(reads or session, key.account_id)
        await AccountRepository(session).touch_api_key(key)
        principal = Principal(
            user_id=key.created_by_user_id,
            via="api_key",
            key_id=key.key_id,
            key_account_id=key.account_id,
        )
    else:
        principal = await _from_jwt(repo, AccountRepository(session), request, token)
    structlog.contextvars.bind_contextvars(user_id=str(principal.user_id))
    return principal


async def _from_jwt(
    repo: AccountRepository, writer: AccountRepository, request: Request, token: str
) -> Principal:
    issuer: TokenIssuer | None = request.app.state.token_issuer
    verifier: SupabaseVerifier | None = request.app.state.supabase_verifier
    try:
        if issuer is not None:
            claims = issuer.verify(token)
        elif verifier is not None:
            claims = await verifier.verify(token)
        else:  # pragma: no cover - create_app always sets one
            raise TokenError("Authentication is not configured.")
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None
    user_id = parse_id(str(claims.get("sub", "")))
    if user_id is None:
        raise Unauthorized("Invalid token.")
    email = claims.get("email") or None
    session_id = parse_id(str(claims.get("session_id", ""))) if claims.get("session_id") else None
    if issuer is not None:
        # Built-in tokens die with their session (logout) and their user.
        auth_session = await repo.get_auth_session(session_id) if session_id else None
        if (
            auth_session is None
            or auth_session.revoked_at is not None
            or auth_session.user_id != user_id
        ):
            raise Unauthorized("Session has ended; sign in again.")
    elif await repo.get_user(user_id) is None:
        await writer.ensure_user(user_id=user_id, email=email)
    return Principal(user_id=user_id, via="jwt", email=email, session_id=session_id)


async def optional_principal(
    session: SessionDep, reads: ReadSessionDep, request: Request
) -> Principal | None:
    token = _bearer(request)
    return None if token is None else await authenticate(session, request, token, reads=reads)


async def require_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise Unauthorized()
    return principal


async def optional_query_token_principal(
    session: SessionDep,
    reads: ReadSessionDep,
    request: Request,
    token: Annotated[
        str | None, Query(description="JWT for browsers that cannot set headers (EventSource)")
    ] = None,
) -> Principal | None:
    header_token = _bearer(request)
    if header_token is not None:
        return await authenticate(session, request, header_token, reads=reads)
    if token is None:
        return None
    if looks_like_api_key(token):
        raise Unauthorized("API keys are not accepted in the URL; send them in a header.")
    return await authenticate(session, request, token, reads=reads)


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
OptionalQueryTokenPrincipal = Annotated[Principal | None, Depends(optional_query_token_principal)]


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


async def acting_account(
    principal: CurrentPrincipal,
    session: SessionDep,
    request: Request,
    x_account_id: Annotated[
        str | None,
        Header(description="Account to act for on creates and lists (default: personal)"),
    ] = None,
) -> uuid.UUID:
    """The account a create or list acts for; 404 when the caller is not a member, 403 when a
    create acts for a suspended account (lists stay allowed)."""
    account_id = await _acting_account_id(principal, session, x_account_id)
    if request.method not in _READS:
        await ensure_active(session, account_id)
    return account_id


async def _acting_account_id(
    principal: Principal, session: SessionDep, x_account_id: str | None
) -> uuid.UUID:
    if x_account_id is None:
        return principal.key_account_id or principal.personal_account_id
    account_id = parse_id(x_account_id)
    if account_id is None:
        raise NotFound("Account not found.")
    if principal.key_account_id is not None and account_id != principal.key_account_id:
        raise NotFound("Account not found.")
    if await AccountRepository(session).member_role(account_id, principal.user_id) is None:
        raise NotFound("Account not found.")
    return account_id


ActingAccount = Annotated[uuid.UUID, Depends(acting_account)]


@dataclass(frozen=True, slots=True)
class AccountAccess:
    """An account from the path and the caller's role in it."""

    account: Account
    role: str


async def member_account(
    account_id: str, principal: CurrentPrincipal, session: SessionDep
) -> AccountAccess:
    """``{account_id}`` from the path; 404 unless the caller is a member."""
    account, role = await account_service.member_account(session, principal, account_id=account_id)
    return AccountAccess(account, role)


MemberAccount = Annotated[AccountAccess, Depends(member_account)]


async def _session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    # async: a plain ``def`` dependency would run in FastAPI's thread pool
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    return factory


SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(_session_factory)]
"""For routes that must commit some work even when they answer with an error (auth)."""
