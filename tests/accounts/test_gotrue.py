"""The GoTrue-compatible routes, driven by the official ``supabase_auth`` client and raw HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from supabase_auth import AsyncGoTrueClient
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError

from tests.conftest import TestUser, make_user


def _email() -> str:
    return f"u-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
async def gotrue(app: FastAPI) -> AsyncIterator[AsyncGoTrueClient]:
    """The official client, unchanged, talking to the app over ASGI."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    auth = AsyncGoTrueClient(
        url="http://testserver/auth/v1",
        headers={"apikey": "anon"},
        http_client=http,
        auto_refresh_token=False,
    )
    yield auth
    await http.aclose()


async def _signup(
    client: httpx.AsyncClient, email: str, password: str = "hunter22"
) -> dict[str, Any]:
    response = await client.post("/auth/v1/signup", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _password(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/auth/v1/token",
        params={"grant_type": "password"},
        json={"email": email, "password": password},
    )


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(
        "/auth/v1/token", params={"grant_type": "refresh_token"}, json={"refresh_token": token}
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the official client ---------------------------------------------------------------------


async def test_supabase_client_signs_up_signs_in_refreshes_and_reads_user(
    gotrue: AsyncGoTrueClient, client: httpx.AsyncClient
) -> None:
    email = _email()
    signed_up = await gotrue.sign_up(
        {"email": email, "password": "correct horse", "options": {"data": {"name": "Ada"}}}
    )
    assert signed_up.session is not None and signed_up.user is not None
    assert signed_up.user.email == email
    assert signed_up.user.user_metadata == {"name": "Ada"}
    assert signed_up.user.email_confirmed_at is not None  # autoconfirm
    assert signed_up.user.identities and signed_up.user.identities[0].provider == "email"

    await gotrue.sign_out()
    signed_in = await gotrue.sign_in_with_password({"email": email, "password": "correct horse"})
    assert signed_in.session is not None
    assert signed_in.user is not None and signed_in.user.id == signed_up.user.id
    assert signed_in.user.last_sign_in_at is not None

    refreshed = await gotrue.refresh_session()
    assert refreshed.session is not None
    assert refreshed.session.refresh_token != signed_in.session.refresh_token
    assert refreshed.session.access_token != signed_in.session.access_token

    fetched = await gotrue.get_user()
    assert fetched is not None and fetched.user.email == email
    # The refreshed token works on the shoal API too.
    response = await client.get("/api/accounts", headers=_bearer(refreshed.session.access_token))
    assert response.status_code == 200
    assert [a["account_id"] for a in response.json()["accounts"]] == [signed_up.user.id]


async def test_supabase_client_wrong_password_is_auth_api_error(gotrue: AsyncGoTrueClient) -> None:
    email = _email()
    await gotrue.sign_up({"email": email, "password": "correct horse"})
    with pytest.raises(AuthApiError) as caught:
        await gotrue.sign_in_with_password({"email": email, "password": "wrong horse"})
    assert caught.value.status == 400
    assert caught.value.code == "invalid_credentials"
    assert caught.value.message == "Invalid login credentials"


async def test_supabase_client_sees_duplicate_and_weak_password(gotrue: AsyncGoTrueClient) -> None:
    email = _email()
    await gotrue.sign_up({"email": email, "password": "correct horse"})
    with pytest.raises(AuthApiError) as duplicate:
        await gotrue.sign_up({"email": email.upper(), "password": "another one"})
    assert (duplicate.value.status, duplicate.value.code) == (422, "user_already_exists")
    with pytest.raises(AuthWeakPasswordError) as weak:
        await gotrue.sign_up({"email": _email(), "password": "abc"})
    assert weak.value.status == 422
    assert weak.value.reasons == ["length"]
    assert "at least 6 characters" in weak.value.message


async def test_supabase_client_reused_refresh_token_fails(gotrue: AsyncGoTrueClient) -> None:
    email = _email()
    first = await gotrue.sign_up({"email": email, "password": "correct horse"})
    assert first.session is not None
    await gotrue.refresh_session()
    with pytest.raises(AuthApiError) as caught:
        await gotrue.refresh_session(first.session.refresh_token)
    assert (caught.value.status, caught.value.code) == (400, "refresh_token_already_used")


# -- raw HTTP: shapes and contracts ----------------------------------------------------------


async def test_signup_returns_a_gotrue_session(client: httpx.AsyncClient, app: FastAPI) -> None:
    email = _email()
    body = await _signup(client, email)
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert isinstance(body["expires_at"], int) and body["refresh_token"]
    user = body["user"]
    for field in (
        "id",
        "aud",
        "role",
        "email",
        "email_confirmed_at",
        "phone",
        "confirmed_at",
        "last_sign_in_at",
        "app_metadata",
        "user_metadata",
        "identities",
        "created_at",
        "updated_at",
        "is_anonymous",
    ):
        assert field in user, field
    assert (user["aud"], user["role"], user["is_anonymous"]) == (
        "authenticated",
        "authenticated",
        False,
    )
    # ES256, GoTrue's claims, verifiable with the published JWKS.
    jwks = (await client.get("/auth/v1/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "ES256"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert "d" not in key  # public half only
    claims = jwt.decode(
        body["access_token"], jwt.PyJWK(key).key, algorithms=["ES256"], audience="authenticated"
    )
    assert claims["sub"] == user["id"]
    assert claims["email"] == email
    assert claims["role"] == "authenticated"
    assert claims["exp"] - claims["iat"] == 3600
    uuid.UUID(claims["session_id"])


async def test_errors_carry_both_contracts_without_api_version_header(
    client: httpx.AsyncClient,
) -> None:
    email = _email()
    await _signup(client, email)
    response = await _password(client, email, "nope-nope")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid login credentials",
        "code": "invalid_credentials",
        "msg": "Invalid login credentials",
        "error_code": "invalid_credentials",
    }
    # Echoing the version header would make Supabase clients read `code` as GoTrue's code.
    assert "x-supabase-api-version" not in response.headers
    unknown = await _password(client, _email(), "whatever1")
    assert unknown.status_code == 400 and unknown.json()["error_code"] == "invalid_credentials"


async def test_validation_errors_on_auth_routes_carry_msg(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/v1/signup", json={"email": "not-an-email", "password": "longenough"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error" and body["error_code"] == "email_address_invalid"
    assert body["msg"] == body["detail"]
    response = await client.post("/auth/v1/token", params={"grant_type": "magic"}, json={})
    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_failed"
    assert response.json()["msg"]
    response = await client.post("/auth/v1/signup", json={"email": _email()})
    assert response.status_code == 422 and "password" in response.json()["msg"].lower()


async def test_duplicate_signup_is_422_user_already_exists(client: httpx.AsyncClient) -> None:
    email = _email()
    await _signup(client, email)
    response = await client.post("/auth/v1/signup", json={"email": email, "password": "other-pass"})
    assert response.status_code == 422
    assert response.json()["error_code"] == "user_already_exists"
    assert response.json()["msg"] == "User already registered"


async def test_user_route_needs_a_valid_token(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.get("/auth/v1/user")
    assert response.status_code == 401
    assert response.json()["error_code"] == "no_authorization"
    response = await client.get("/auth/v1/user", headers=_bearer("garbage"))
    assert response.status_code == 401 and response.json()["error_code"] == "bad_jwt"
    response = await client.get("/auth/v1/user", headers=user.headers)
    assert response.status_code == 200 and response.json()["id"] == str(user.id)


# -- refresh rotation ------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_kills_the_session(client: httpx.AsyncClient) -> None:
    session = await _signup(client, _email())
    first = await _refresh(client, session["refresh_token"])
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != session["refresh_token"]
    assert rotated["user"]["id"] == session["user"]["id"]
    assert (
        await client.get("/api/accounts", headers=_bearer(rotated["access_token"]))
    ).status_code == 200

    reuse = await _refresh(client, session["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error_code"] == "refresh_token_already_used"
    assert reuse.json()["code"] == "refresh_token_already_used"
    # The whole session is gone: its newest refresh token and its access tokens.
    assert (await _refresh(client, rotated["refresh_token"])).status_code == 400
    for token in (session["access_token"], rotated["access_token"]):
        assert (await client.get("/api/accounts", headers=_bearer(token))).status_code == 401


async def test_unknown_refresh_token_is_400(client: httpx.AsyncClient) -> None:
    response = await _refresh(client, "not-a-token")
    assert response.status_code == 400
    assert response.json()["error_code"] == "refresh_token_not_found"


# -- logout ----------------------------------------------------------------------------------


async def test_logout_revokes_the_session(client: httpx.AsyncClient) -> None:
    session = await _signup(client, _email())
    headers = _bearer(session["access_token"])
    assert (await client.get("/api/accounts", headers=headers)).status_code == 200
    response = await client.post("/auth/v1/logout", headers=headers)
    assert response.status_code == 204
    assert (await client.get("/api/accounts", headers=headers)).status_code == 401
    assert (await client.get("/auth/v1/user", headers=headers)).status_code == 401
    assert (await _refresh(client, session["refresh_token"])).status_code == 400


async def test_logout_scopes(client: httpx.AsyncClient) -> None:
    email = _email()
    a = await _signup(client, email)
    b = (await _password(client, email, "hunter22")).json()
    c = (await _password(client, email, "hunter22")).json()

    async def alive(session: dict[str, Any]) -> bool:
        response = await client.get("/auth/v1/user", headers=_bearer(session["access_token"]))
        return response.status_code == 200

    response = await client.post(
        "/auth/v1/logout", params={"scope": "others"}, headers=_bearer(b["access_token"])
    )
    assert response.status_code == 204
    assert [await alive(s) for s in (a, b, c)] == [False, True, False]
    response = await client.post(
        "/auth/v1/logout", params={"scope": "local"}, headers=_bearer(b["access_token"])
    )
    assert response.status_code == 204
    assert not await alive(b)
    d = (await _password(client, email, "hunter22")).json()
    e = (await _password(client, email, "hunter22")).json()
    await client.post("/auth/v1/logout", headers=_bearer(d["access_token"]))  # global default
    assert [await alive(s) for s in (d, e)] == [False, False]


async def test_supabase_client_sign_out_revokes(
    gotrue: AsyncGoTrueClient, client: httpx.AsyncClient
) -> None:
    signed = await gotrue.sign_up({"email": _email(), "password": "correct horse"})
    assert signed.session is not None
    await gotrue.sign_out()
    assert await gotrue.get_session() is None
    response = await client.get("/api/accounts", headers=_bearer(signed.session.access_token))
    assert response.status_code == 401


# -- sign-in rate limit ------------------------------------------------------------------------


class TestRateLimit:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"login_rate_limit": 3, "login_rate_window_seconds": 60}

    async def test_login_burst_gets_429_with_retry_after(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        victim = await make_user(app, password="right-password")
        statuses = [
            (await _password(client, victim.email, f"guess-{i}")).status_code for i in range(3)
        ]
        assert statuses == [400, 400, 400]
        limited = await _password(client, victim.email, "right-password")
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert limited.json()["error_code"] == "over_request_rate_limit"
        assert 1 <= int(limited.headers["retry-after"]) <= 120  # at most two windows

    async def test_limit_is_per_client_address_too(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        for _ in range(3):
            assert (await _password(client, _email(), "whatever1")).status_code == 400
        # A fresh email from the same client is still limited.
        other = await make_user(app, password="right-password")
        response = await _password(client, other.email, "right-password")
        assert response.status_code == 429
        assert "retry-after" in response.headers

    async def test_supabase_client_sees_rate_limit(
        self, gotrue: AsyncGoTrueClient, app: FastAPI
    ) -> None:
        victim = await make_user(app, password="right-password")
        for _ in range(3):
            with pytest.raises(AuthApiError):
                await gotrue.sign_in_with_password({"email": victim.email, "password": "nope-nope"})
        with pytest.raises(AuthApiError) as caught:
            await gotrue.sign_in_with_password(
                {"email": victim.email, "password": "right-password"}
            )
        assert (caught.value.status, caught.value.code) == (429, "over_request_rate_limit")

    async def test_signup_burst_from_one_client_is_limited(self, client: httpx.AsyncClient) -> None:
        for _ in range(3):
            await _signup(client, _email())
        response = await client.post(
            "/auth/v1/signup", json={"email": _email(), "password": "hunter22"}
        )
        assert response.status_code == 429 and "retry-after" in response.headers


async def test_malformed_json_gets_a_plain_message_in_gotrue_shape(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/auth/v1/signup", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == body["msg"] == "The request body is not valid JSON."
    assert body["error_code"] == "validation_failed"
