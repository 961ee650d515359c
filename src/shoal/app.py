"""create_app(settings): lifespan state, middleware, routers and the one error handler."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal import health
from shoal.accounts.gotrue import router as gotrue_router
from shoal.accounts.router import router as accounts_router
from shoal.agents.router import router as agents_router
from shoal.auth.tokens import SupabaseVerifier, TokenIssuer, load_signing_key
from shoal.billing.router import router as billing_router
from shoal.config import Settings, load_settings
from shoal.db.engine import create_engine, session_factory
from shoal.db.migrate import upgrade_async
from shoal.errors import ShoalError, ValidationFailed
from shoal.kit.asgi import send_error
from shoal.llm.base import ChatModel
from shoal.observability.logging import redact
from shoal.observability.metrics_router import router as metrics_router
from shoal.runs import service as run_service
from shoal.runs.host import RunHost
from shoal.runs.router import router as runs_router
from shoal.sandbox import SandboxProvider
from shoal.sandboxes.manager import SandboxManager
from shoal.sandboxes.preview_origin import PreviewOriginMiddleware
from shoal.sandboxes.router import router as sandboxes_router
from shoal.threads.router import router as threads_router

log = structlog.get_logger("shoal")
access_log = structlog.get_logger("shoal.access")


def _error(status: int, detail: str, code: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code, **extra}, status_code=status)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShoalError)
    async def _shoal(_request: Request, exc: ShoalError) -> JSONResponse:
        response = JSONResponse(exc.body(), status_code=exc.status)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        error = ValidationFailed.from_pydantic(exc.errors())
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            detail = "Not found."
        response = _error(exc.status_code, detail, code)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, _exc: IntegrityError) -> JSONResponse:
        return _error(409, "The request conflicts with existing data.", "conflict")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error=type(exc).__name__)
        return _error(500, "Internal server error.", "internal")


_UPLOAD_PATHS = re.compile(r"^/api/(sandboxes/[^/]+/files|agent/initiate)/?$")


class RequestContextMiddleware:
    """Request id, body size limit, and a redacted access log (no tokens, keys or ?token=)."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_upload: int | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max(max_body, max_upload or 0)

    def _limit(self, scope: Scope) -> int:
        """File uploads (the files API, initiate) may be larger than other bodies."""
        path: str = scope.get("path", "")
        return self.max_upload if _UPLOAD_PATHS.match(path) else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        limit = self._limit(scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _send_json(
                send, 413, "Request body is too large.", "payload_too_large", request_id
            )
            self._log(scope, 413, started)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await _send_json(
                    send, 413, "Request body is too large.", "payload_too_large", request_id
                )
            status = 413
        finally:
            self._log(scope, status, started)

    @staticmethod
    def _log(scope: Scope, status: int, started: float) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope.get("path", "") + (f"?{query}" if query else "")
        access_log.info(
            "request",
            method=scope.get("method"),
            path=redact(path),
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )


class _BodyTooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, detail: str, code: str, request_id: str) -> None:
    await send_error(send, status, detail, code, headers=[(b"x-request-id", request_id.encode())])


def create_app(
    settings: Settings | None = None,
    *,
    migrate: bool | None = None,
    chat_model: ChatModel | None = None,
    sandbox_provider: SandboxProvider | None = None,
) -> FastAPI:
    """Build the application. ``migrate`` defaults to True on the embedded SQLite database;
    ``chat_model`` replaces the LiteLLM/demo model and ``sandbox_provider`` the configured
    sandbox provider (tests inject fakes at these seams)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        should_migrate = settings.is_sqlite if migrate is None else migrate
        if should_migrate:
            await upgrade_async(settings.effective_database_url)
        engine = create_engine(settings.effective_database_url, settings=settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.session_factory = session_factory(engine)
        app.state.token_issuer = None
        app.state.supabase_verifier = None
        if settings.auth_mode == "builtin":
            key, _generated = load_signing_key(settings.auth_signing_key, settings.data_dir)
            app.state.token_issuer = TokenIssuer(
                key,
                issuer=f"{settings.public_url.rstrip('/')}/auth/v1",
                ttl_seconds=settings.access_token_ttl_seconds,
            )
        else:
            app.state.supabase_verifier = SupabaseVerifier(
                jwt_secret=settings.supabase_jwt_secret,
                jwks_url=settings.supabase_effective_jwks_url,
            )
        host = RunHost.create(
            settings,
            app.state.session_factory,
            execute=settings.broker_url is None,
            chat_model=chat_model,
        )
        if sandbox_provider is not None:
            host.runtime.use_sandboxes(
                SandboxManager(settings, app.state.session_factory, provider=sandbox_provider)
            )
        app.state.sandboxes = host.runtime.sandboxes
        app.state.runtime = host.runtime
        app.state.run_host = host
        app.state.readiness = host.readiness
        app.state.queue_depth = host.queue_depth
        app.state.project_hooks = run_service.project_hooks(host.runtime)
        await host.start()
        log.info(
            "shoal_started",
            database="sqlite" if settings.is_sqlite else "postgresql",
            mode="embedded" if settings.broker_url is None else "api",
        )
        try:
            yield
        finally:
            await host.stop()
            await host.runtime.sandboxes.aclose()
            await engine.dispose()

    app = FastAPI(
        title="shoal",
        version=__import__("shoal").__version__,
        description="Self-hostable backend for autonomous AI agents.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials="*" not in settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "retry-after"],
        )
    if settings.preview_url:
        app.add_middleware(PreviewOriginMiddleware, preview_url=settings.preview_url)
    app.add_middleware(
        RequestContextMiddleware,
        max_body=settings.max_request_bytes,
        max_upload=settings.sandbox_upload_max_bytes + 64 * 1024,  # + the form's other fields
    )
    app.include_router(health.router, prefix="/api")
    app.include_router(metrics_router)  # GET /metrics (not under /api: scrapers' default)
    app.include_router(accounts_router, prefix="/api")
    app.include_router(threads_router, prefix="/api")
    app.include_router(agents_router, prefix="/api")
    app.include_router(runs_router, prefix="/api")
    app.include_router(sandboxes_router, prefix="/api")
    app.include_router(billing_router, prefix="/api")
    if settings.auth_mode == "builtin":
        app.include_router(gotrue_router)
    return app
