"""SHOAL_AUTH_MODE=supabase: tokens from a real GoTrue are verified, never trusted.

HS256 tokens are signed with the project's JWT secret; ES256 tokens with a key published as a
JWKS, served here by a tiny HTTP server on 127.0.0.1 (the verifier fetches it for real).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm

from shoal.accounts.repository import AccountRepository
from shoal.db.session import unit_of_work

SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
KID = "test-key-1"
_KEY = ec.generate_private_key(ec.SECP256R1())
_OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def _public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg="ES256", use="sig")
    return jwk


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    body = json.dumps({"keys": [_public_jwk(_KEY, KID)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/auth/v1/.well-known/jwks.json":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/auth/v1/.well-known/jwks.json"
    server.shutdown()


@pytest.fixture
def settings_overrides(jwks_url: str) -> dict[str, Any]:
    return {"auth_mode": "supabase", "supabase_jwt_secret": SECRET, "supabase_jwks_url": jwks_url}


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "aud": "authenticated",
        "role": "authenticated",
        "email": f"sb-{uuid.uuid4().hex[:8]}@example.com",
        "iat": now,
        "exp": now + 600,
        "session_id": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def hs256(**overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), SECRET, algorithm="HS256")


def es256(key: ec.EllipticCurvePrivateKey = _KEY, kid: str = KID, **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), key, algorithm="ES256", headers={"kid": kid})


def _unsigned(**overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), None, algorithm="none")  # type: ignore[arg-type]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_builtin_auth_routes_are_not_mounted(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("POST", "/auth/v1/signup"),
        ("POST", "/auth/v1/token?grant_type=password"),
        ("GET", "/auth/v1/user"),
        ("GET", "/auth/v1/.well-known/jwks.json"),
    ):
        response = await client.request(method, path, json={})
        assert response.status_code == 404, path


@pytest.mark.parametrize("sign", [hs256, es256], ids=["hs256", "es256-jwks"])
async def test_first_valid_token_creates_user_and_personal_account(
    client: httpx.AsyncClient, sign: Any
) -> None:
    user_id = str(uuid.uuid4())
    email = f"first-{uuid.uuid4().hex[:8]}@example.com"
    token = sign(sub=user_id, email=email)
    response = await client.get("/api/accounts", headers=_bearer(token))
    assert response.status_code == 200, response.text
    [account] = response.json()["accounts"]
    assert (account["account_id"], account["personal"], account["role"]) == (user_id, True, "owner")
    # Seen again (a new token for the same user): the same single account.
    again = await client.get("/api/accounts", headers=_bearer(sign(sub=user_id, email=email)))
    assert [a["account_id"] for a in again.json()["accounts"]] == [user_id]
    members = await client.get(f"/api/accounts/{user_id}/members", headers=_bearer(token))
    assert [m["email"] for m in members.json()["members"]] == [email]


async def test_supabase_users_can_use_teams_and_api_keys(client: httpx.AsyncClient) -> None:
    owner = hs256()
    team = await client.post("/api/accounts", json={"name": "Team"}, headers=_bearer(owner))
    assert team.status_code == 201
    key = await client.post(
        "/api/api-keys",
        json={"name": "bot"},
        headers={**_bearer(owner), "X-Account-Id": team.json()["account_id"]},
    )
    assert key.status_code == 201
    listed = await client.get("/api/accounts", headers={"X-API-Key": key.json()["secret"]})
    assert [a["account_id"] for a in listed.json()["accounts"]] == [team.json()["account_id"]]


REFUSED: dict[str, Callable[[], str]] = {
    "hs256-expired": lambda: hs256(exp=int(time.time()) - 30, iat=int(time.time()) - 700),
    "es256-expired": lambda: es256(exp=int(time.time()) - 30, iat=int(time.time()) - 700),
    "hs256-wrong-audience": lambda: hs256(aud="anon"),
    "es256-wrong-audience": lambda: es256(aud="https://elsewhere.example"),
    "hs256-no-audience": lambda: hs256(aud=None),
    "hs256-bad-signature": lambda: jwt.encode(_claims(), "another-secret-" * 3, algorithm="HS256"),
    "es256-bad-signature": lambda: es256(key=_OTHER_KEY),
    "es256-unknown-kid": lambda: es256(kid="not-published"),
    "alg-none": lambda: _unsigned(),
    "alg-none-with-kid": lambda: jwt.encode(
        _claims(),
        None,  # type: ignore[arg-type]
        algorithm="none",
        headers={"kid": KID},
    ),
    "alg-hs512": lambda: jwt.encode(_claims(), SECRET * 2, algorithm="HS512"),
    "no-subject": lambda: hs256(sub=None, role="anon"),
    "no-expiry": lambda: hs256(exp=None),
    "garbage": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_bad_tokens_are_refused(client: httpx.AsyncClient, name: str) -> None:
    token = REFUSED[name]()
    response = await client.get("/api/accounts", headers=_bearer(token))
    assert response.status_code == 401, f"{name}: {response.status_code} {response.text}"
    assert response.json()["code"] == "unauthorized"


async def test_alg_confusion_with_published_key_is_refused(client: httpx.AsyncClient) -> None:
    # A token naming the EC key's kid but claiming RS256 must not pick the algorithm.
    token = es256()
    _header, payload, signature = token.split(".")
    forged_header = jwt.utils.base64url_encode(
        json.dumps({"alg": "RS256", "kid": KID, "typ": "JWT"}).encode()
    ).decode()
    response = await client.get(
        "/api/accounts", headers=_bearer(f"{forged_header}.{payload}.{signature}")
    )
    assert response.status_code == 401


async def test_refused_tokens_create_nobody(client: httpx.AsyncClient, app: FastAPI) -> None:
    user_id = uuid.uuid4()
    for token in (
        hs256(sub=str(user_id), exp=int(time.time()) - 30),
        hs256(sub=str(user_id), aud="anon"),
        es256(key=_OTHER_KEY, sub=str(user_id)),
    ):
        assert (await client.get("/api/accounts", headers=_bearer(token))).status_code == 401
    async with unit_of_work(app.state.session_factory) as session:
        repo = AccountRepository(session)
        assert await repo.get_user(user_id) is None
        assert await repo.get_account(user_id) is None
