"""/api/projects/{project_id}/sandbox, /api/sandboxes/{sandbox_id}/files and the port relay."""

from __future__ import annotations

import contextlib
import mimetypes
import posixpath
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile, WebSocket
from fastapi.responses import RedirectResponse, StreamingResponse

from shoal.accounts.deps import OptionalPrincipal, OptionalQueryTokenPrincipal, authenticate
from shoal.auth.principal import Principal
from shoal.auth.secrets import looks_like_api_key
from shoal.config import Settings
from shoal.db.deps import SessionDep
from shoal.db.models import Sandbox
from shoal.errors import BadRequest, PayloadTooLarge, ShoalError, Unauthorized
from shoal.sandbox import SandboxError
from shoal.sandboxes import relay, service
from shoal.sandboxes.manager import SandboxManager
from shoal.sandboxes.relay_ws import WebSocketBridge
from shoal.sandboxes.schemas import FileEntryRead, FileList, FileUploaded, SandboxRead

router = APIRouter(tags=["sandboxes"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "not found, or not yours"}}
_READ_CHUNK = 1 << 20


def _manager(request: Request) -> SandboxManager:
    manager: SandboxManager = request.app.state.sandboxes
    return manager


ManagerDep = Annotated[SandboxManager, Depends(_manager)]


async def _readable(sandbox_id: str, session: SessionDep, principal: OptionalPrincipal) -> Sandbox:
    sandbox, _ = await service.load_sandbox(session, principal, sandbox_id, write=False)
    return sandbox


async def _readable_by_token(
    sandbox_id: str, session: SessionDep, principal: OptionalQueryTokenPrincipal
) -> Sandbox:
    sandbox, _ = await service.load_sandbox(session, principal, sandbox_id, write=False)
    return sandbox


async def _writable(sandbox_id: str, session: SessionDep, principal: OptionalPrincipal) -> Sandbox:
    sandbox, _ = await service.load_sandbox(session, principal, sandbox_id, write=True)
    return sandbox


ReadableSandbox = Annotated[Sandbox, Depends(_readable)]
"""The sandbox if the caller may read its project (members; anyone for public projects)."""
TokenReadableSandbox = Annotated[Sandbox, Depends(_readable_by_token)]
"""Like ReadableSandbox, also accepting ``?token=<JWT>`` (browsers: downloads, previews)."""
WritableSandbox = Annotated[Sandbox, Depends(_writable)]
PathQuery = Annotated[
    str | None, Query(max_length=4096, description="`/workspace/…` or relative to it")
]


# -- the project's sandbox -------------------------------------------------------------------------


@router.get("/projects/{project_id}/sandbox", response_model=SandboxRead, responses=_NOT_FOUND)
async def get_project_sandbox(
    project_id: str, session: SessionDep, principal: OptionalPrincipal, manager: ManagerDep
) -> SandboxRead:
    """The project's sandbox (its record is created in state `stopped` if it has none yet)."""
    sandbox = await service.project_sandbox(
        session, principal, manager, project_id=project_id, write=False
    )
    sandbox = await service.refreshed(session, manager, sandbox)
    return SandboxRead.model_validate(sandbox)


@router.post(
    "/projects/{project_id}/sandbox/ensure-active",
    response_model=SandboxRead,
    responses=_NOT_FOUND,
)
async def ensure_active(
    project_id: str, session: SessionDep, principal: OptionalPrincipal, manager: ManagerDep
) -> SandboxRead:
    """Start the project's sandbox now (creating it first if needed); members only."""
    sandbox = await service.project_sandbox(
        session, principal, manager, project_id=project_id, write=True
    )
    await session.commit()  # the manager works in transactions of its own
    sandbox = await service.ensure_active(session, manager, sandbox)
    return SandboxRead.model_validate(sandbox)


# -- files ---------------------------------------------------------------------------------------


@router.get("/sandboxes/{sandbox_id}/files", response_model=FileList, responses=_NOT_FOUND)
async def list_files(
    sandbox: ReadableSandbox, session: SessionDep, manager: ManagerDep, path: PathQuery = None
) -> FileList:
    """The entries of a directory (default `/workspace`); paths are always absolute."""
    await session.commit()
    entries = await service.list_files(manager, sandbox, path)
    return FileList(files=[FileEntryRead.model_validate(entry) for entry in entries])


@router.get("/sandboxes/{sandbox_id}/files/content", responses=_NOT_FOUND)
async def file_content(
    sandbox: TokenReadableSandbox, session: SessionDep, manager: ManagerDep, path: PathQuery = None
) -> Response:
    """A file's bytes (`?token=` accepted for browsers), with a guessed content type."""
    await session.commit()
    data = await service.read_file(manager, sandbox, path)
    name = posixpath.basename(path or "") or "file"
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(
        data,
        media_type=media_type,
        headers={
            "Content-Disposition": f"inline; filename*=UTF-8''{_quote(name)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


@router.post(
    "/sandboxes/{sandbox_id}/files",
    status_code=201,
    response_model=FileUploaded,
    responses=_NOT_FOUND,
)
async def upload_file(
    sandbox: WritableSandbox,
    request: Request,
    session: SessionDep,
    manager: ManagerDep,
    path: Annotated[str, Form(min_length=1, max_length=4096)],
    file: Annotated[UploadFile, File()],
) -> FileUploaded:
    """Create or overwrite a file (parent directories are created)."""
    await session.commit()
    settings: Settings = request.app.state.settings
    data = await _read_upload(file, settings.sandbox_upload_max_bytes)
    entry = await service.write_file(
        manager, sandbox, path, data, max_bytes=settings.sandbox_upload_max_bytes
    )
    return FileUploaded(path=entry.path, size=entry.size)


@router.delete("/sandboxes/{sandbox_id}/files", status_code=204, responses=_NOT_FOUND)
async def delete_file(
    sandbox: WritableSandbox, session: SessionDep, manager: ManagerDep, path: PathQuery = None
) -> Response:
    """Delete a file, or a directory with everything in it."""
    await session.commit()
    await service.delete_file(manager, sandbox, path)
    return Response(status_code=204)


async def _read_upload(file: UploadFile, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await file.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The file is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


# -- port relay ----------------------------------------------------------------------------------

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise BadRequest(f"Invalid port {value}: ports are 1–65535.")
    return value


@router.api_route("/sandboxes/{sandbox_id}/ports/{port}", methods=_METHODS, include_in_schema=False)
async def relay_root(sandbox_id: str, port: int, request: Request) -> Response:
    """`…/ports/8000` → `…/ports/8000/` so relative links in the page resolve under it (the
    query, `?token=` included, is kept: the slash form turns it into the relay cookie)."""
    query = request.url.query
    return RedirectResponse(
        f"{request.url.path}/" + (f"?{query}" if query else ""), status_code=307
    )


async def _relay_readable(
    sandbox_id: str, request: Request, session: SessionDep, principal: OptionalQueryTokenPrincipal
) -> Sandbox:
    """Like TokenReadableSandbox, also accepting the relay cookie a `?token=` visit set (an
    expired or revoked one counts as anonymous: public projects stay readable)."""
    if principal is None:
        cookie = request.cookies.get(relay.RELAY_COOKIE)
        if cookie and not looks_like_api_key(cookie):
            with contextlib.suppress(Unauthorized):
                principal = await authenticate(session, request, cookie)
    sandbox, _ = await service.load_sandbox(session, principal, sandbox_id, write=False)
    return sandbox


RelaySandbox = Annotated[Sandbox, Depends(_relay_readable)]


def _relay_cookie(response: Response, request: Request, prefix: str) -> None:
    """A browser that came with `?token=` keeps it as an HttpOnly cookie for this port's
    path only, so the page's own links and assets are authorised without the token."""
    token = request.query_params.get("token")
    if not token or looks_like_api_key(token):
        return
    response.set_cookie(
        relay.RELAY_COOKIE,
        token,
        path=f"{prefix}/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


async def relay_http(
    sandbox: RelaySandbox,
    port: int,
    path: str,
    request: Request,
    session: SessionDep,
    manager: ManagerDep,
) -> Response:
    """Relay HTTP to `localhost:{port}` inside the sandbox (what `expose_port` returns).
    Anyone who may read the project may use it (`?token=` accepted for browsers); the caller's
    credentials are never passed on."""
    port = _port(port)
    await session.commit()
    prefix = f"/api/sandboxes/{sandbox.sandbox_id}/ports/{port}"
    if request.query_params.get("token") and request.method in ("GET", "HEAD"):
        # The page must never see the token in its own URL (its scripts could read it): trade
        # it for the path-scoped HttpOnly cookie and come back without it.
        query = relay.clean_query(request.url.query)
        redirect = RedirectResponse(
            request.url.path + (f"?{query}" if query else ""), status_code=303
        )
        _relay_cookie(redirect, request, prefix)
        return redirect
    provider_id = await service.started_provider_id(manager, sandbox)
    dest = await relay.target(manager.provider, provider_id, port)
    settings: Settings = request.app.state.settings
    try:
        answer = await relay.send_http(
            dest,
            method=request.method,
            path=path,
            query=relay.clean_query(request.url.query),
            headers=[
                *relay.forward_headers(request.headers.items(), prefix=prefix),
                *relay.body_framing(request.headers),
            ],
            body=_body(request),
            timeout=settings.sandbox_relay_timeout_seconds,
        )
    except ShoalError:
        raise
    except Exception as exc:
        raise SandboxError(
            f"Nothing answered on port {port} in the sandbox ({type(exc).__name__})."
        ) from None
    headers = [
        (k, relay.rewrite_location(v, prefix=prefix) if k.lower() == "location" else v)
        for k, v in answer.headers
    ]
    response = StreamingResponse(answer.body, status_code=answer.status)
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    _relay_cookie(response, request, prefix)  # a non-GET that came with ?token=
    return response


for _method in _METHODS:
    router.add_api_route(
        "/sandboxes/{sandbox_id}/ports/{port}/{path:path}",
        relay_http,
        methods=[_method],
        operation_id=f"relay_{_method.lower()}",
        responses=_NOT_FOUND,
        include_in_schema=_method != "HEAD",
    )


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


@router.websocket("/sandboxes/{sandbox_id}/ports/{port}/{path:path}")
async def relay_websocket(websocket: WebSocket, sandbox_id: str, port: int, path: str) -> None:
    """Relay a WebSocket to `localhost:{port}` inside the sandbox (`?token=` or a bearer
    header; read access to the project)."""
    app = websocket.app
    manager: SandboxManager = app.state.sandboxes
    try:
        port = _port(port)
        async with app.state.session_factory() as session:
            principal = await _ws_principal(session, websocket)
            sandbox, _ = await service.load_sandbox(session, principal, sandbox_id, write=False)
            provider_id = await service.started_provider_id(manager, sandbox)
        dest = await relay.target(manager.provider, provider_id, port)
    except ShoalError as exc:
        code = 1008 if exc.status in (401, 403, 404) else 1011
        await websocket.close(code=code, reason=exc.message[:120])
        return
    prefix = f"/api/sandboxes/{sandbox.sandbox_id}/ports/{port}"
    try:
        bridge = WebSocketBridge(
            websocket, dest, path=path, query=relay.clean_query(websocket.url.query), prefix=prefix
        )
        await bridge.run()
    except (OSError, ShoalError):
        await websocket.close(code=1011, reason=f"Nothing answered on port {port}.")


async def _ws_principal(session: SessionDep, websocket: WebSocket) -> Principal | None:
    header = websocket.headers.get("authorization", "")
    token = header.partition(" ")[2].strip() if header.lower().startswith("bearer ") else ""
    token = token or websocket.headers.get("x-api-key", "")
    if not token:
        token = websocket.query_params.get("token", "")
        if looks_like_api_key(token):  # as on every other route: never a key in a URL
            raise Unauthorized("API keys are not accepted in the URL; send them in a header.")
    if token:
        return await authenticate(session, websocket, token)  # type: ignore[arg-type]
    cookie = websocket.cookies.get(relay.RELAY_COOKIE)
    if cookie and not looks_like_api_key(cookie):
        with contextlib.suppress(Unauthorized):
            return await authenticate(session, websocket, cookie)  # type: ignore[arg-type]
    return None
