"""Users, passwords and built-in sign-in sessions (GoTrue-compatible). No FastAPI here.

Sign-up, password sign-in, refresh-token rotation (presenting a used refresh token again
revokes its session), the current user and sign-out; errors carry GoTrue's ``error_code`` as
well as ours.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.accounts.repository import AccountRepository
from shoal.accounts.schemas import GoTrueIdentity, GoTrueSession, GoTrueUser
from shoal.auth.principal import Principal
from shoal.auth.secrets import hash_password, hash_secret, new_refresh_token, verify_password
from shoal.auth.tokens import AUDIENCE, TokenIssuer
from shoal.db.models import User
from shoal.errors import BadRequest, Forbidden, NotFound, ShoalError, ValidationFailed
from shoal.kit.time import utcnow

MIN_PASSWORD_LENGTH = 6  # GoTrue's default
MAX_PASSWORD_LENGTH = 1024  # hashing cost is linear in length; refuse absurd inputs
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LogoutScope = Literal["global", "local", "others"]

# -- errors (each carries GoTrue's error_code as well as ours) -----------------------------------


class InvalidCredentials(BadRequest):
    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("Invalid login credentials", extra={"error_code": self.code})


class UserAlreadyExists(ShoalError):
    status = 422  # what GoTrue answers, so Supabase clients recognise it
    code = "user_already_exists"

    def __init__(self) -> None:
        super().__init__("User already registered", extra={"error_code": self.code})


class RefreshTokenNotFound(BadRequest):
    code = "refresh_token_not_found"

    def __init__(self) -> None:
        super().__init__(
            "Invalid Refresh Token: Refresh Token Not Found", extra={"error_code": self.code}
        )


class RefreshTokenAlreadyUsed(BadRequest):
    """A used refresh token came back: the session is revoked (it may have been stolen)."""

    code = "refresh_token_already_used"

    def __init__(self) -> None:
        super().__init__(
            "Invalid Refresh Token: Already Used; the session was ended, sign in again.",
            extra={"error_code": self.code},
        )


class SessionExpired(BadRequest):
    code = "session_expired"

    def __init__(self) -> None:
        super().__init__("Invalid Refresh Token: Session Expired", extra={"error_code": self.code})


def _invalid(field: str, message: str, *, error_code: str, **extra: Any) -> ValidationFailed:
    error = ValidationFailed(message, errors=[{"loc": ["body", field], "msg": message}])
    error.extra.update(error_code=error_code, **extra)
    return error


def require_user(principal: Principal) -> None:
    if principal.via != "jwt":
        raise Forbidden(
            "Managing accounts, members and API keys needs a signed-in user, not an API key."
        )


# -- users and passwords ----------------------------------------------------------------------


def normalize_email(email: str | None) -> str:
    value = (email or "").strip().lower()
    if not value:
        raise _invalid("email", "An email address is required.", error_code="validation_failed")
    if len(value) > 320 or not _EMAIL.match(value):
        raise _invalid(
            "email",
            "Unable to validate email address: invalid format",
            error_code="email_address_invalid",
        )
    return value


def check_password(password: str | None) -> str:
    """GoTrue's policy: at least 6 characters."""
    if not password:
        raise _invalid("password", "A password is required.", error_code="validation_failed")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise _invalid(
            "password",
            f"Password should be at least {MIN_PASSWORD_LENGTH} characters.",
            error_code="weak_password",
            weak_password={"reasons": ["length"]},
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise _invalid(
            "password",
            f"Password should be at most {MAX_PASSWORD_LENGTH} characters.",
            error_code="validation_failed",
        )
    return password


async def create_user(
    session: AsyncSession,
    *,
    email: str | None,
    password: str | None,
    user_metadata: dict[str, Any] | None = None,
) -> User:
    """A new password user with their personal account; 422 ``user_already_exists`` if taken."""
    address = normalize_email(email)
    secret = check_password(password)
    repo = AccountRepository(session)
    if await repo.get_user_by_email(address) is not None:
        raise UserAlreadyExists()
    password_hash = await asyncio.to_thread(hash_password, secret)
    user = await repo.create_user_unless_exists(
        email=address, password_hash=password_hash, user_metadata=user_metadata
    )
    if user is None:
        raise UserAlreadyExists()
    return user


def gotrue_user(user: User) -> GoTrueUser:
    identities = []
    if user.email and user.password_hash:
        identities.append(
            GoTrueIdentity(
                id=str(user.id),
                identity_id=str(uuid.uuid5(user.id, "email")),
                user_id=str(user.id),
                identity_data={
                    "email": user.email,
                    "email_verified": user.email_confirmed_at is not None,
                    "phone_verified": False,
                    "sub": str(user.id),
                },
                provider="email",
                last_sign_in_at=user.last_sign_in_at,
                created_at=user.created_at,
                updated_at=user.updated_at,
                email=user.email,
            )
        )
    return GoTrueUser(
        id=str(user.id),
        aud=AUDIENCE,
        role="authenticated",
        email=user.email,
        email_confirmed_at=user.email_confirmed_at,
        phone="",
        confirmed_at=user.email_confirmed_at,
        last_sign_in_at=user.last_sign_in_at,
        app_metadata=dict(user.app_metadata or {}),
        user_metadata=dict(user.user_metadata or {}),
        identities=identities,
        created_at=user.created_at,
        updated_at=user.updated_at,
        is_anonymous=False,
    )


# -- built-in sign-in sessions ----------------------------------------------------------------


def _session_out(
    issuer: TokenIssuer, user: User, session_id: uuid.UUID, refresh_token: str
) -> GoTrueSession:
    token, expires_at = issuer.issue(
        user_id=user.id,
        email=user.email,
        session_id=session_id,
        extra={
            "app_metadata": dict(user.app_metadata or {}),
            "user_metadata": dict(user.user_metadata or {}),
        },
    )
    return GoTrueSession(
        access_token=token,
        expires_in=issuer.ttl_seconds,
        expires_at=expires_at,
        refresh_token=refresh_token,
        user=gotrue_user(user),
    )


async def start_session(
    session: AsyncSession,
    issuer: TokenIssuer,
    *,
    user: User,
    refresh_ttl_seconds: int,
    user_agent: str | None = None,
) -> GoTrueSession:
    """Open a sign-in session for ``user``: an access token and its first refresh token."""
    repo = AccountRepository(session)
    auth_session = await repo.create_auth_session(user_id=user.id, user_agent=user_agent)
    refresh = new_refresh_token()
    await repo.add_refresh_token(
        session_id=auth_session.id,
        token_hash=hash_secret(refresh),
        expires_at=utcnow() + timedelta(seconds=refresh_ttl_seconds),
    )
    await repo.mark_signed_in(user)
    return _session_out(issuer, user, auth_session.id, refresh)


async def sign_in_with_password(
    session: AsyncSession,
    issuer: TokenIssuer,
    *,
    email: str | None,
    password: str | None,
    refresh_ttl_seconds: int,
    user_agent: str | None = None,
) -> GoTrueSession:
    if not email or not password:
        raise _invalid(
            "email" if not email else "password",
            "An email address and a password are required.",
            error_code="validation_failed",
        )
    user = await AccountRepository(session).get_user_by_email(email.strip())
    stored_hash = user.password_hash if user is not None else None
    # verify_password checks a dummy hash for unknown users: no timing hint that they exist.
    if not await asyncio.to_thread(verify_password, password, stored_hash) or user is None:
        raise InvalidCredentials()
    return await start_session(
        session,
        issuer,
        user=user,
        refresh_ttl_seconds=refresh_ttl_seconds,
        user_agent=user_agent,
    )


async def refresh_session(
    session: AsyncSession,
    issuer: TokenIssuer,
    *,
    refresh_token: str | None,
    refresh_ttl_seconds: int,
) -> GoTrueSession:
    """Rotate a refresh token: mark it used and issue its child.

    Presenting a token that was already used revokes its whole session and raises
    :class:`RefreshTokenAlreadyUsed` — the caller must commit before answering, so that the
    revocation sticks.
    """
    if not refresh_token:
        raise _invalid(
            "refresh_token", "A refresh token is required.", error_code="validation_failed"
        )
    repo = AccountRepository(session)
    token = await repo.refresh_token_by_hash(hash_secret(refresh_token))
    auth_session = await repo.get_auth_session(token.session_id) if token else None
    if token is None or auth_session is None or auth_session.revoked_at is not None:
        raise RefreshTokenNotFound()
    if token.used_at is not None or not await repo.use_refresh_token(token):
        await repo.revoke_sessions(user_id=auth_session.user_id, only=auth_session.id)
        raise RefreshTokenAlreadyUsed()
    if token.expires_at <= utcnow():
        raise SessionExpired()
    user = await repo.get_user(auth_session.user_id)
    if user is None:  # pragma: no cover - sessions cascade with their user
        raise RefreshTokenNotFound()
    child = new_refresh_token()
    await repo.add_refresh_token(
        session_id=auth_session.id,
        token_hash=hash_secret(child),
        expires_at=utcnow() + timedelta(seconds=refresh_ttl_seconds),
        parent_id=token.id,
    )
    await repo.mark_session_refreshed(auth_session)
    return _session_out(issuer, user, auth_session.id, child)


async def current_user(session: AsyncSession, principal: Principal) -> GoTrueUser:
    user = await AccountRepository(session).get_user(principal.user_id)
    if user is None:  # pragma: no cover - a built-in token dies with its user's sessions
        raise NotFound("User not found.")
    return gotrue_user(user)


async def sign_out(session: AsyncSession, principal: Principal, *, scope: LogoutScope) -> None:
    """Revoke this session (``local``), every session (``global``) or all others (``others``)."""
    repo = AccountRepository(session)
    current = principal.session_id
    if scope == "local":
        if current is not None:
            await repo.revoke_sessions(user_id=principal.user_id, only=current)
    elif scope == "others":
        await repo.revoke_sessions(user_id=principal.user_id, keep=current)
    else:
        await repo.revoke_sessions(user_id=principal.user_id)
