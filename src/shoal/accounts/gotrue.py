"""GoTrue-compatible auth routes (built-in mode only, mounted at ``/auth/v1``).

Enough of GoTrue for Supabase client libraries to work unchanged: password signup (with
autoconfirm), password and refresh-token grants, the current user, logout and the JWKS.

Errors carry both contracts: ours (``detail``, ``code``) and GoTrue's (``msg``,
``error_code``). Supabase clients send ``X-Supabase-Api-Version: 2024-01-01``; when a response
echoes that header they read the error code from ``code``, otherwise from ``error_code``. We
never echo it, so clients read GoTrue's ``error_code`` while ``code`` keeps our own values.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from shoal.accounts import identity, ratelimit
from shoal.accounts.deps import OptionalPrincipal, SessionFactoryDep
from shoal.accounts.schemas import GoTrueSession, GoTrueUser, SignUpRequest, TokenRequest
from shoal.auth.principal import Principal
from shoal.auth.tokens import TokenIssuer
from shoal.config import Settings
from shoal.db.deps import SessionDep
from shoal.db.session import unit_of_work
from shoal.errors import RateLimited, ShoalError, Unauthorized, ValidationFailed

# Our code → GoTrue's error_code, for errors that do not name one themselves.
_GOTRUE_CODES = {
    "unauthorized": "bad_jwt",
    "rate_limited": "over_request_rate_limit",
    "validation_error": "validation_failed",
    "bad_request": "validation_failed",
    "not_found": "not_found",
    "forbidden": "not_admin",
    "conflict": "conflict",
}


class GoTrueRoute(APIRoute):
    """Adds GoTrue's ``msg`` and ``error_code`` to every error of these routes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def gotrue_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise _gotrue(_validation_failed(exc)) from None
            except ShoalError as exc:
                raise _gotrue(exc) from None

        return gotrue_handler


def _validation_failed(exc: RequestValidationError) -> ValidationFailed:
    return ValidationFailed.from_pydantic(exc.errors())


def _gotrue(exc: ShoalError) -> ShoalError:
    exc.extra.setdefault("msg", exc.message)
    exc.extra.setdefault("error_code", _GOTRUE_CODES.get(exc.code, exc.code))
    return exc


router = APIRouter(prefix="/auth/v1", tags=["auth"], route_class=GoTrueRoute)


def _issuer(request: Request) -> TokenIssuer:
    issuer: TokenIssuer = request.app.state.token_issuer
    return issuer


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _rate_limit(request: Request, factory: SessionFactoryDep, *keys: str) -> None:
    settings = _settings(request)
    retry_after = await ratelimit.hit(
        factory,
        keys,
        limit=settings.login_rate_limit,
        window_seconds=settings.login_rate_window_seconds,
    )
    if retry_after is not None:
        raise RateLimited(
            f"Request rate limit reached; try again in {retry_after} seconds.",
            retry_after=retry_after,
        )


async def _user_principal(principal: OptionalPrincipal) -> Principal:
    if principal is None:
        raise Unauthorized(
            "This endpoint requires a Bearer token", extra={"error_code": "no_authorization"}
        )
    if principal.via != "jwt":
        raise Unauthorized("This endpoint requires a user access token, not an API key.")
    return principal


UserPrincipal = Annotated[Principal, Depends(_user_principal)]


@router.post("/signup")
async def signup(
    body: SignUpRequest, request: Request, factory: SessionFactoryDep
) -> GoTrueSession:
    """Create a user with email and password and sign them in (email is auto-confirmed)."""
    await _rate_limit(request, factory, f"signup-ip:{_client_ip(request)}")
    settings = _settings(request)
    async with unit_of_work(factory) as session:
        user = await identity.create_user(
            session, email=body.email, password=body.password, user_metadata=body.data
        )
        return await identity.start_session(
            session,
            _issuer(request),
            user=user,
            refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
            user_agent=request.headers.get("user-agent"),
        )


@router.post("/token")
async def token(
    body: TokenRequest,
    request: Request,
    factory: SessionFactoryDep,
    grant_type: Annotated[Literal["password", "refresh_token"], Query()],
) -> GoTrueSession:
    """Sign in with ``grant_type=password`` or rotate a refresh token (``refresh_token``).

    Password sign-ins are rate limited per email and per client address (429 with
    ``Retry-After``). A refresh token works once: presenting a used one ends its session.
    """
    settings = _settings(request)
    issuer = _issuer(request)
    if grant_type == "password":
        email = (body.email or "").strip().lower()
        keys = [f"ip:{_client_ip(request)}"] + ([f"email:{email}"] if email else [])
        await _rate_limit(request, factory, *keys)
        async with unit_of_work(factory) as session:
            return await identity.sign_in_with_password(
                session,
                issuer,
                email=email,
                password=body.password,
                refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
                user_agent=request.headers.get("user-agent"),
            )
    reused: identity.RefreshTokenAlreadyUsed | None = None
    async with unit_of_work(factory) as session:
        try:
            return await identity.refresh_session(
                session,
                issuer,
                refresh_token=body.refresh_token,
                refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
            )
        except identity.RefreshTokenAlreadyUsed as exc:
            reused = exc  # commit the session's revocation, then answer with the error
    raise reused


@router.get("/user")
async def get_user(principal: UserPrincipal, session: SessionDep) -> GoTrueUser:
    """The signed-in user."""
    return await identity.current_user(session, principal)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    principal: UserPrincipal,
    session: SessionDep,
    scope: Annotated[Literal["global", "local", "others"], Query()] = "global",
) -> None:
    """End sessions: every one of yours (``global``), this one (``local``) or the ``others``.

    Access tokens of an ended session stop working at once.
    """
    await identity.sign_out(session, principal, scope=scope)


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    """The public keys that verify access tokens (ES256)."""
    return _issuer(request).jwks()
