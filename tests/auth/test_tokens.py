"""Signing keys, built-in tokens and the Supabase verifier (no HTTP app needed)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shoal.auth.secrets import (
    hash_password,
    hash_secret,
    looks_like_api_key,
    new_api_key,
    verify_password,
)
from shoal.auth.tokens import SupabaseVerifier, TokenError, TokenIssuer, load_signing_key


def _issuer(tmp_path: Path, ttl: int = 3600) -> TokenIssuer:
    key, _ = load_signing_key(None, tmp_path)
    return TokenIssuer(key, issuer="http://test/auth/v1", ttl_seconds=ttl)


def test_generated_key_is_persisted_and_reused(tmp_path: Path) -> None:
    first, generated = load_signing_key(None, tmp_path)
    second, _ = load_signing_key(None, tmp_path)
    assert generated is True
    assert first.kid == second.kid
    assert (tmp_path / "auth_signing_key.pem").stat().st_mode & 0o077 == 0  # private to us


def test_configured_pem_and_jwks_keys(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    from_pem, generated = load_signing_key(pem, tmp_path)
    assert generated is False
    private_jwk = json.loads(ECAlgorithm.to_jwk(key))
    private_jwk["kid"] = "mine"
    from_jwks, _ = load_signing_key(json.dumps({"keys": [private_jwk]}), tmp_path)
    assert from_jwks.kid == "mine"
    assert from_pem.public_jwk()["x"] == from_jwks.public_jwk()["x"]
    with pytest.raises(ValueError, match="no private key"):
        public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        load_signing_key(json.dumps({"keys": [public]}), tmp_path)


def test_issued_token_has_gotrue_claims_and_verifies(tmp_path: Path) -> None:
    issuer = _issuer(tmp_path)
    user_id, session_id = uuid.uuid4(), uuid.uuid4()
    token, expires_at = issuer.issue(user_id=user_id, email="a@example.com", session_id=session_id)
    claims = issuer.verify(token)
    assert claims["sub"] == str(user_id)
    assert claims["session_id"] == str(session_id)
    assert (claims["aud"], claims["role"], claims["email"]) == (
        "authenticated",
        "authenticated",
        "a@example.com",
    )
    assert claims["exp"] == expires_at and expires_at - claims["iat"] == 3600
    jwk = issuer.jwks()["keys"][0]
    assert "d" not in jwk and jwk["alg"] == "ES256"


def test_issuer_refuses_foreign_expired_and_unsigned_tokens(tmp_path: Path) -> None:
    issuer = _issuer(tmp_path / "a")
    other = _issuer(tmp_path / "b")
    token, _ = other.issue(user_id=uuid.uuid4(), email=None, session_id=uuid.uuid4())
    with pytest.raises(TokenError):
        issuer.verify(token)
    expired = jwt.encode(
        {"sub": "x", "aud": "authenticated", "exp": int(time.time()) - 10},
        issuer.key.private_key,
        algorithm="ES256",
    )
    with pytest.raises(TokenError, match="expired"):
        issuer.verify(expired)
    unsigned = jwt.encode(
        {"sub": "x", "aud": "authenticated", "exp": int(time.time()) + 60},
        None,  # type: ignore[arg-type]
        algorithm="none",
    )
    with pytest.raises(TokenError):
        issuer.verify(unsigned)


def test_a_verified_token_is_remembered_but_still_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = _issuer(tmp_path, ttl=60)
    token, expires_at = issuer.issue(user_id=uuid.uuid4(), email=None, session_id=uuid.uuid4())
    first = issuer.verify(token)
    first["sub"] = "tampered by a caller"  # callers get copies: the cache is not theirs
    calls = 0
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    again = issuer.verify(token)
    assert calls == 0  # no second signature check for the same token
    assert again["sub"] != "tampered by a caller" and again["exp"] == expires_at
    # one character changed is another token: verified (and refused) in full
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenError):
        issuer.verify(forged)
    assert calls == 1
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(TokenError, match="expired"):
        issuer.verify(token)


def test_remembered_tokens_are_bounded_and_aged_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal.auth.tokens import VerifiedTokens

    cache = VerifiedTokens(size=8, max_age=30)
    exp = int(time.time()) + 3600
    for n in range(20):
        cache.put(f"token-{n}", {"exp": exp, "sub": str(n)})
    assert len(cache._claims) <= 8
    assert cache.get("token-19") == {"exp": exp, "sub": "19"}
    assert cache.get("token-0") is None  # the oldest went first
    now = time.monotonic() + 31
    monkeypatch.setattr(time, "monotonic", lambda: now)
    assert cache.get("token-19") is None  # kept at most max_age: verified again after that


def test_passwords_and_api_keys() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong horse", hashed)
    assert not verify_password("correct horse", None)
    key = new_api_key()
    assert looks_like_api_key(key) and key != new_api_key()
    assert hash_secret(key) == hash_secret(key) and key not in hash_secret(key)


# -- SupabaseVerifier with an injected JWKS transport ----------------------------------------


class Jwks:
    """A JWKS endpoint that counts its fetches."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.fail = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.fail:
            return httpx.Response(503)
        return httpx.Response(200, json={"keys": self.keys})


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {"sub": str(uuid.uuid4()), "aud": "authenticated", "iat": now, "exp": now + 60}


def _ec(kid: str) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    return key, jwk


def _verifier(jwks: Jwks, secret: str | None = None, refetch: float = 5.0) -> SupabaseVerifier:
    return SupabaseVerifier(
        jwt_secret=secret,
        jwks_url="https://project.supabase.co/auth/v1/.well-known/jwks.json",
        min_refetch_seconds=refetch,
        transport=httpx.MockTransport(jwks.handler),
    )


async def test_jwks_is_cached_and_refetched_for_a_new_kid() -> None:
    key1, jwk1 = _ec("k1")
    key2, jwk2 = _ec("k2")
    jwks = Jwks(jwk1)
    verifier = _verifier(jwks, refetch=0)
    for _ in range(3):
        await verifier.verify(jwt.encode(_claims(), key1, algorithm="ES256", headers={"kid": "k1"}))
    assert jwks.fetches == 1
    jwks.keys.append(jwk2)  # GoTrue rotated its keys
    await verifier.verify(jwt.encode(_claims(), key2, algorithm="ES256", headers={"kid": "k2"}))
    assert jwks.fetches == 2


async def test_unknown_kids_do_not_hammer_the_jwks() -> None:
    key1, jwk1 = _ec("k1")
    stranger, _ = _ec("nope")
    jwks = Jwks(jwk1)
    verifier = _verifier(jwks)
    await verifier.verify(jwt.encode(_claims(), key1, algorithm="ES256", headers={"kid": "k1"}))
    for _ in range(5):
        with pytest.raises(TokenError):
            await verifier.verify(
                jwt.encode(_claims(), stranger, algorithm="ES256", headers={"kid": "nope"})
            )
    assert jwks.fetches == 1


async def test_key_type_decides_the_algorithm() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    rsa_jwk["kid"] = "rsa"
    verifier = _verifier(Jwks(rsa_jwk))
    good = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa"})
    assert (await verifier.verify(good))["aud"] == "authenticated"
    ec_key, _ = _ec("rsa")
    forged = jwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "rsa"})
    with pytest.raises(TokenError):
        await verifier.verify(forged)


async def test_unreachable_jwks_refuses_with_a_clear_message() -> None:
    key, _ = _ec("k1")
    jwks = Jwks()
    jwks.fail = True
    with pytest.raises(TokenError, match="signing keys"):
        await _verifier(jwks).verify(
            jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "k1"})
        )


async def test_hs256_needs_the_secret() -> None:
    token = jwt.encode(_claims(), "s" * 40, algorithm="HS256")
    with pytest.raises(TokenError):
        await _verifier(Jwks()).verify(token)  # no secret configured
    assert (await _verifier(Jwks(), secret="s" * 40).verify(token))["aud"] == "authenticated"
