"""Users, accounts (personal and team), memberships, API keys and auth sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shoal.db.base import Base, TimestampMixin
from shoal.kit.ids import new_id
from shoal.kit.time import utcnow


class User(TimestampMixin, Base):
    """A person who signs in. Supabase-mode users have no password here."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    email_confirmed_at: Mapped[datetime | None]
    last_sign_in_at: Mapped[datetime | None]
    user_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    app_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Account(TimestampMixin, Base):
    """A tenant. A personal account has ``account_id == user_id`` (as Supabase basejump)."""

    __tablename__ = "accounts"

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    personal: Mapped[bool] = mapped_column(Boolean, default=False)
    primary_owner_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Set by an operator (`shoal accounts suspend`): no creates, runs or API-key use until
    # cleared; members can still sign in, read, stop and delete (docs/operations.md).
    suspended_at: Mapped[datetime | None]
    suspended_reason: Mapped[str | None] = mapped_column(String(500))


class AccountMember(Base):
    __tablename__ = "account_members"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'member')", name="role"),
        Index("ix_account_members_user_id_account_id", "user_id", "account_id"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.account_id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A secret ``shoal_sk_…`` acting for one account; only its hash is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_account_id_created_at", "account_id", "created_at", "key_id"),
    )

    key_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.account_id", ondelete="CASCADE")
    )
    created_by_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class AuthSession(Base):
    """A sign-in session (the JWT's ``session_id``); logout revokes it."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    refreshed_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(512))


class RefreshToken(Base):
    """One refresh token of a session; each use rotates it. Reusing a used one fails."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    parent_id: Mapped[uuid.UUID | None]
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class LoginAttempt(Base):
    """Fixed-window counters for the sign-in rate limit, shared by every replica."""

    __tablename__ = "login_attempts"
    __table_args__ = (UniqueConstraint("key", "window_start"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(400))
    window_start: Mapped[datetime] = mapped_column(index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
