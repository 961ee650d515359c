"""Request and response models: accounts, members, API keys, and GoTrue's auth payloads."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Role = Literal["owner", "member"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- accounts ---------------------------------------------------------------------------------


class AccountCreate(_Input):
    name: Name


class AccountRead(_Read):
    """An account and the caller's role in it."""

    account_id: uuid.UUID
    name: str
    personal: bool
    role: Role
    created_at: datetime
    updated_at: datetime
    suspended_at: datetime | None = Field(
        None,
        description="set while an operator has suspended the account (creates, runs "
        "and API keys answer 403)",
    )


class AccountList(BaseModel):
    accounts: list[AccountRead]
    next_cursor: str | None


class MemberCreate(_Input):
    """Add a user to the account, or change the role of a member."""

    user_id: uuid.UUID
    role: Role = "member"


class MemberRead(_Read):
    user_id: uuid.UUID
    email: str | None
    role: Role
    created_at: datetime


class MemberList(BaseModel):
    members: list[MemberRead]
    next_cursor: str | None


# -- API keys ---------------------------------------------------------------------------------


class ApiKeyCreate(_Input):
    name: Name = "API key"


class ApiKeyRead(_Read):
    key_id: uuid.UUID
    name: str
    prefix: str = Field(description="the first characters of the key, to recognise it")
    created_at: datetime
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    secret: str = Field(description="the key itself; shown once, only in this response")


class ApiKeyList(BaseModel):
    api_keys: list[ApiKeyRead]
    next_cursor: str | None


# -- GoTrue-compatible auth -------------------------------------------------------------------
# Inputs ignore unknown fields: Supabase clients send extras (``gotrue_meta_security``,
# ``code_challenge``, ``data`` on sign-in) that GoTrue itself ignores.


class _GoTrueInput(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SignUpRequest(_GoTrueInput):
    email: str | None = None
    password: str | None = None
    data: dict[str, Any] | None = Field(None, description="initial user_metadata")


class TokenRequest(_GoTrueInput):
    """``grant_type=password``: ``email`` + ``password``; ``refresh_token``: ``refresh_token``."""

    email: str | None = None
    password: str | None = None
    refresh_token: str | None = None


class GoTrueIdentity(BaseModel):
    id: str
    identity_id: str
    user_id: str
    identity_data: dict[str, Any]
    provider: str
    last_sign_in_at: datetime | None
    created_at: datetime
    updated_at: datetime
    email: str | None


class GoTrueUser(BaseModel):
    """A user as GoTrue returns it."""

    id: str
    aud: str
    role: str
    email: str | None
    email_confirmed_at: datetime | None
    phone: str
    confirmed_at: datetime | None
    last_sign_in_at: datetime | None
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any]
    identities: list[GoTrueIdentity]
    created_at: datetime
    updated_at: datetime
    is_anonymous: bool


class GoTrueSession(BaseModel):
    """A signed-in session as GoTrue returns it (also the signup answer with autoconfirm)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int
    expires_at: int
    refresh_token: str
    user: GoTrueUser
