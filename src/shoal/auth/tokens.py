"""JWT signing and verification.

Built-in mode signs ES256 access tokens with GoTrue's claims and publishes the public half as a
JWKS. Supabase mode verifies tokens issued by a real GoTrue: HS256 with the project's JWT secret
or asymmetric keys from its JWKS. Signature, ``exp`` and ``aud`` are always checked; the
algorithm comes from our allow-list, never from the token (so ``alg: none`` cannot pass).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.types import Options

AUDIENCE = "authenticated"
KEY_FILE = "auth_signing_key.pem"
ASYMMETRIC_ALGS = ("ES256", "RS256", "EdDSA")
_REQUIRED: Options = {"require": ["exp", "sub", "aud"]}


class TokenError(Exception):
    """A token that must be refused; the message is safe to show."""


class VerifiedTokens:
    """Claims of tokens whose signature was already checked, so a client's every request does
    not pay for an ECDSA verification again (0.2–0.5 ms each here).

    Keyed by the whole token: only a byte-identical token hits, so the signature, ``aud`` and
    algorithm checks hold for it unchanged; ``exp`` is checked again on every hit. An entry is
    kept at most ``max_age`` seconds (a key withdrawn from a JWKS stops working within that)
    and the oldest go first beyond ``size`` entries. Revocation (logout) is not a property of
    the token and is checked per request by the caller."""

    def __init__(self, *, size: int = 4096, max_age: float = 60.0) -> None:
        self.size = size
        self.max_age = max_age
        self._claims: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, token: str) -> dict[str, Any] | None:
        entry = self._claims.get(token)
        if entry is None:
            return None
        stored_at, claims = entry
        if time.monotonic() - stored_at > self.max_age:
            del self._claims[token]
            return None
        if int(claims["exp"]) <= time.time():
            del self._claims[token]
            raise TokenError("Token has expired.")
        return dict(claims)

    def put(self, token: str, claims: dict[str, Any]) -> dict[str, Any]:
        if len(self._claims) >= self.size:
            for oldest in list(self._claims)[: max(1, self.size // 8)]:
                del self._claims[oldest]
        self._claims[token] = (time.monotonic(), dict(claims))
        return claims


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update(kid=self.kid, alg="ES256", use="sig", key_ops=["verify"])
        return jwk


def _kid_for(key: ec.EllipticCurvePrivateKey) -> str:
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    thumb = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return hashlib.sha256(thumb.encode()).hexdigest()[:16]


def load_signing_key(configured: str | None, data_dir: Path) -> tuple[SigningKey, bool]:
    """The built-in signing key: configured (PEM or JWKS) or generated into the data dir.

    Returns the key and whether it was generated/read from the data dir (production refuses that).
    """
    if configured:
        text = configured.strip()
        if text.startswith("{"):
            data = json.loads(text)
            keys = data.get("keys", [data])
            private = next((k for k in keys if "d" in k), None)
            if private is None:
                raise ValueError("SHOAL_AUTH_SIGNING_KEY JWKS holds no private key")
            key = ECAlgorithm.from_jwk(json.dumps(private))
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("SHOAL_AUTH_SIGNING_KEY must be an EC P-256 private key")
            return SigningKey(str(private.get("kid") or _kid_for(key)), key), False
        loaded = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError("SHOAL_AUTH_SIGNING_KEY must be an EC P-256 private key (PEM)")
        return SigningKey(_kid_for(loaded), loaded), False
    path = data_dir / KEY_FILE
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        return SigningKey(_kid_for(loaded), loaded), True
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        os.link(tmp, path)  # atomic and first-writer-wins across concurrent starts
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return load_signing_key(None, data_dir)


class TokenIssuer:
    """Signs built-in access tokens (ES256) and verifies them."""

    def __init__(self, key: SigningKey, *, issuer: str, ttl_seconds: int) -> None:
        self.key = key
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds
        self._public_key = key.private_key.public_key()
        self._verified = VerifiedTokens()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public_jwk()]}

    def issue(
        self,
        *,
        user_id: uuid.UUID,
        email: str | None,
        session_id: uuid.UUID,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, int]:
        """Return ``(token, expires_at)``."""
        now = int(time.time())
        exp = now + self.ttl_seconds
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": str(user_id),
            "aud": AUDIENCE,
            "role": "authenticated",
            "email": email or "",
            "phone": "",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "is_anonymous": False,
            "session_id": str(session_id),
            "iat": now,
            "exp": exp,
            **(extra or {}),
        }
        token = jwt.encode(
            claims, self.key.private_key, algorithm="ES256", headers={"kid": self.key.kid}
        )
        return token, exp

    def verify(self, token: str) -> dict[str, Any]:
        known = self._verified.get(token)
        if known is not None:
            return known
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["ES256"],
                audience=AUDIENCE,
                options=_REQUIRED,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("Token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("Invalid token.") from exc
        return self._verified.put(token, claims)


@dataclass
class SupabaseVerifier:
    """Verifies tokens from a real GoTrue (HS256 secret and/or JWKS).

    ``transport`` lets tests (or unusual deployments) route the JWKS fetch through a custom
    httpx transport; the default is the network.
    """

    jwt_secret: str | None
    jwks_url: str | None
    cache_seconds: float = 600.0
    min_refetch_seconds: float = 5.0  # an unknown kid refetches at most this often
    transport: httpx.AsyncBaseTransport | None = None
    _jwks: dict[str, Any] = field(default_factory=dict)
    _fetched_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _verified: VerifiedTokens = field(default_factory=VerifiedTokens)

    async def _keys(self, *, force: bool = False) -> dict[str, Any]:
        if self.jwks_url is None:
            return {}
        fresh = time.monotonic() - self._fetched_at < self.cache_seconds
        if self._jwks and fresh and not force:
            return self._jwks
        async with self._lock:
            recent = time.monotonic() - self._fetched_at < self.min_refetch_seconds
            if force and recent and self._jwks:
                return self._jwks  # do not hammer GoTrue on a burst of unknown kids
            try:
                async with httpx.AsyncClient(timeout=5.0, transport=self.transport) as client:
                    response = await client.get(self.jwks_url)
                    response.raise_for_status()
                    data = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                if self._jwks:
                    return self._jwks
                raise TokenError("Cannot fetch the signing keys to verify this token.") from exc
            keys = data.get("keys", []) if isinstance(data, dict) else []
            self._jwks = {str(k.get("kid")): k for k in keys if isinstance(k, dict)}
            self._fetched_at = time.monotonic()
            return self._jwks

    async def _public_key(self, header: Mapping[str, Any], alg: str) -> Any:
        kid = str(header.get("kid"))
        keys = await self._keys()
        if kid not in keys:
            keys = await self._keys(force=True)
        jwk = keys.get(kid)
        if jwk is None:
            raise TokenError("Invalid token.")
        pyjwk = jwt.PyJWK(jwk)
        # The key decides the algorithm: a token may not pick another one for a published key.
        if pyjwk.algorithm_name != alg:
            raise TokenError("Invalid token.")
        return pyjwk.key

    async def verify(self, token: str) -> dict[str, Any]:
        known = self._verified.get(token)
        if known is not None:
            return known
        return self._verified.put(token, await self._verify(token))

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("Invalid token.") from exc
        alg = header.get("alg")
        try:
            if alg == "HS256":
                if not self.jwt_secret:
                    raise TokenError("Invalid token.")
                return jwt.decode(
                    token,
                    self.jwt_secret,
                    algorithms=["HS256"],
                    audience=AUDIENCE,
                    options=_REQUIRED,
                )
            if alg not in ASYMMETRIC_ALGS:
                raise TokenError("Invalid token.")
            key = await self._public_key(header, alg)
            return jwt.decode(token, key, algorithms=[alg], audience=AUDIENCE, options=_REQUIRED)
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("Token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("Invalid token.") from exc
