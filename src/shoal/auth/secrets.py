"""Passwords (argon2id), API keys (``shoal_sk_…``) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

API_KEY_PREFIX = "shoal_sk_"
_hasher = PasswordHasher()
# A real hash to verify against when the user does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash("shoal-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(value: str) -> str:
    """SHA-256 of a high-entropy secret (API keys, refresh tokens): fast lookup, no salt needed."""
    return hashlib.sha256(value.encode()).hexdigest()
