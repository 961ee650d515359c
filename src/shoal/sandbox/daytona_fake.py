"""``FakeDaytona``: a local stand-in for the Daytona API, so the real SDK code path runs in CI.

It serves, on ``127.0.0.1:<free port>`` (uvicorn in a background thread, like
:class:`~shoal.llm.fake_server.FakeLLMServer`), exactly what :class:`DaytonaProvider` makes the
SDK call:

* ``/api/sandbox…`` — create, get (by id or name), start, stop, delete, preview URL and toolbox
  proxy URL. Sandboxes carry ``toolboxProxyUrl = <server>/toolbox``.
* ``/toolbox/{id}/…`` — process sessions (with the live log websocket) and files
  (:mod:`shoal.sandbox.daytona_fake_toolbox`).
* ``/preview/{id}/{port}/…`` — the preview URL: checks ``x-daytona-preview-token`` and forwards
  the HTTP request to that port of the backing sandbox.

Every JSON body is validated with the SDK's own generated models (``CreateSandbox.from_dict``,
``SessionExecuteRequest.from_dict``, …; a malformed one is answered 400) and every answer is
built from them. Sandboxes are backed by one :class:`~shoal.sandbox.fake.ScriptedSandbox`
(pass one with your scripts): it proves the plumbing, not isolation.

    with FakeDaytona(scripted_sandbox()) as fake:
        provider = DaytonaProvider(DaytonaOptions(api_key=fake.api_key, api_url=fake.api_url))
        ...
        fake.requests  # [(method, path, body), …] as received
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar

from daytona_api_client import (
    CreateSandbox,
    PortPreviewUrl,
    Sandbox,
    ToolboxProxyUrl,
    UpdateSandboxNetworkSettings,
)
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shoal.errors import ShoalError
from shoal.kit.threaded_server import ThreadedServer
from shoal.kit.time import utcnow
from shoal.sandbox.base import SandboxSpec
from shoal.sandbox.daytona_fake_toolbox import FakeSession, Toolbox, ToolboxError, error_response
from shoal.sandbox.daytona_wire import PREVIEW_TOKEN_HEADER
from shoal.sandbox.fake import ScriptedSandbox


class _Model(Protocol):
    @classmethod
    def from_dict(cls, obj: dict[str, Any] | None) -> Self | None: ...


M = TypeVar("M", bound=_Model)


@dataclass(slots=True)
class FakeSandbox:
    id: str
    name: str
    request: CreateSandbox
    state: str = "started"
    created_at: str = field(default_factory=lambda: utcnow().isoformat())
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    preview_token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def kill_all(self) -> None:
        for session in self.sessions.values():
            session.kill()
        self.sessions.clear()


class FakeDaytona:
    """The fake API. Use as a (sync or async) context manager, or ``start()``/``stop()``."""

    def __init__(self, backend: ScriptedSandbox | None = None, *, api_key: str = "") -> None:
        self.backend = backend or ScriptedSandbox()
        self.api_key = api_key or f"fake-daytona-{uuid.uuid4().hex[:12]}"
        self.requests: list[tuple[str, str, Any]] = []
        self.sandboxes: dict[str, FakeSandbox] = {}
        self._toolbox = Toolbox(self)
        self._http = ThreadedServer(
            self.app(),
            name="fake-daytona",
            on_exit=self._close_backend,
            http="h11",
            ws="websockets-sansio",
        )

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def api_url(self) -> str:
        """What ``DAYTONA_API_URL`` should be."""
        return f"{self.url}/api"

    # -- lookups shared with the toolbox -------------------------------------------------------

    def check_auth(self, header: str | None) -> None:
        if header != f"Bearer {self.api_key}":
            raise ToolboxError(401, "Invalid API key")

    def find(self, id_or_name: str) -> FakeSandbox:
        box = self.sandboxes.get(id_or_name)
        if box is None:
            box = next((b for b in self.sandboxes.values() if b.name == id_or_name), None)
        if box is None:
            raise ToolboxError(404, f"Sandbox with ID or name {id_or_name} not found")
        return box

    async def validated(self, request: Request, model: type[M]) -> M:
        """The JSON body parsed by the SDK's model; 400 when it does not fit."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            raise ToolboxError(400, f"Malformed JSON: {exc}") from None
        self.requests.append((request.method, request.url.path, body))
        if not isinstance(body, dict):
            raise ToolboxError(400, f"Expected a JSON object for {model.__name__}")
        try:
            parsed = model.from_dict(body)
        except ValidationError as exc:
            raise ToolboxError(400, f"Invalid {model.__name__}: {exc}") from None
        if parsed is None:
            raise ToolboxError(400, f"Expected a JSON object for {model.__name__}")
        return parsed

    # -- the control plane ---------------------------------------------------------------------

    def _dto(self, box: FakeSandbox) -> dict[str, Any]:
        req = box.request
        return Sandbox(
            id=box.id, organization_id="fake-org", name=box.name, snapshot=req.snapshot,
            user=req.user or "daytona", env=req.env or {}, labels=req.labels or {},
            public=bool(req.public), network_block_all=bool(req.network_block_all), kvm=False,
            target=req.target or "fake", cpu=1, gpu=0, memory=1, disk=3, state=box.state,
            auto_stop_interval=req.auto_stop_interval, created_at=box.created_at,
            toolbox_proxy_url=f"{self.url}/toolbox",
        ).to_dict()  # fmt: skip

    async def _create(self, request: Request) -> Response:
        body = await self.validated(request, CreateSandbox)
        if body.name and any(b.name == body.name for b in self.sandboxes.values()):
            raise ToolboxError(409, f"Sandbox with name {body.name} already exists")
        sandbox_id = str(uuid.uuid4())
        box = FakeSandbox(sandbox_id, body.name or sandbox_id, body)
        spec = SandboxSpec(
            network="none" if body.network_block_all else "open",
            env=body.env or {},
            labels=body.labels or {},
        )
        await self.backend.create(spec, sandbox_id=sandbox_id)
        await self.backend.start(sandbox_id)
        self.sandboxes[sandbox_id] = box
        return JSONResponse(self._dto(box))

    async def _get(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, None))
        return JSONResponse(self._dto(self.find(request.path_params["id"])))

    async def _start(self, request: Request) -> Response:
        box = self.find(request.path_params["id"])
        self.requests.append((request.method, request.url.path, None))
        await self.backend.start(box.id)
        box.state = "started"
        return JSONResponse(self._dto(box))

    async def _stop(self, request: Request) -> Response:
        box = self.find(request.path_params["id"])
        self.requests.append((request.method, request.url.path, None))
        box.kill_all()
        await self.backend.stop(box.id)
        box.state = "stopped"
        return JSONResponse(self._dto(box))

    async def _network(self, request: Request) -> Response:
        box = self.find(request.path_params["id"])
        body = await self.validated(request, UpdateSandboxNetworkSettings)
        if body.network_block_all is None:
            raise ToolboxError(400, "Only networkBlockAll is supported by this fake")
        box.request.network_block_all = body.network_block_all
        await self.backend.set_network(box.id, "none" if body.network_block_all else "open")
        return JSONResponse(self._dto(box))

    async def _delete(self, request: Request) -> Response:
        box = self.find(request.path_params["id"])
        self.requests.append((request.method, request.url.path, None))
        box.kill_all()
        await self.backend.delete(box.id)
        del self.sandboxes[box.id]
        box.state = "destroyed"
        return JSONResponse(self._dto(box))

    async def _preview_url(self, request: Request) -> Response:
        box = self.find(request.path_params["id"])
        port = int(request.path_params["port"])
        url = f"{self.url}/preview/{box.id}/{port}"
        return JSONResponse(
            PortPreviewUrl(sandbox_id=box.id, url=url, token=box.preview_token).to_dict()
        )

    async def _toolbox_url(self, request: Request) -> Response:
        self.find(request.path_params["id"])
        return JSONResponse(ToolboxProxyUrl(url=f"{self.url}/toolbox").to_dict())

    def _api(self, handler: Any) -> Any:
        async def guarded(request: Request) -> Response:
            try:
                self.check_auth(request.headers.get("authorization"))
                response: Response = await handler(request)
                return response
            except ToolboxError as exc:
                return error_response(exc.status, exc.message, None, request.url.path)

        return guarded

    # -- preview -------------------------------------------------------------------------------

    async def _preview(self, request: Request) -> Response:
        """Forward the request to the port over HTTP/1.0 and relay the answer."""
        try:
            box = self.find(request.path_params["id"])
        except ToolboxError as exc:
            return Response(exc.message, status_code=404)
        if request.headers.get(PREVIEW_TOKEN_HEADER) != box.preview_token:
            return Response("missing or wrong preview token", status_code=401)
        try:
            conn = await self.backend.open_port(box.id, int(request.path_params["port"]))
        except ShoalError as exc:
            return Response(f"bad gateway: {exc.message}", status_code=502)
        body = await request.body()
        path = "/" + request.path_params["path"]
        if request.url.query:
            path += "?" + request.url.query
        head = f"{request.method} {path} HTTP/1.0\r\nHost: localhost\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        conn.writer.write(head.encode() + body)
        await conn.writer.drain()
        raw = await asyncio.wait_for(conn.reader.read(), timeout=30)
        await conn.aclose()
        header_block, _, payload = raw.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        headers.pop("Content-Length", None)
        return Response(payload, status_code=status, headers=headers)

    # -- serving -------------------------------------------------------------------------------

    def app(self) -> Starlette:
        one = "/api/sandbox/{id}"
        api = [
            Route("/api/sandbox", self._api(self._create), methods=["POST"]),
            Route(one, self._api(self._get), methods=["GET"]),
            Route(one, self._api(self._delete), methods=["DELETE"]),
            Route(one + "/start", self._api(self._start), methods=["POST"]),
            Route(one + "/stop", self._api(self._stop), methods=["POST"]),
            Route(one + "/network-settings", self._api(self._network), methods=["POST"]),
            Route(one + "/ports/{port:int}/preview-url", self._api(self._preview_url)),
            Route(one + "/toolbox-proxy-url", self._api(self._toolbox_url)),
        ]
        preview = Route(
            "/preview/{id}/{port:int}/{path:path}",
            self._preview,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
        )
        return Starlette(routes=[*api, *self._toolbox.routes(), preview])

    def start(self) -> FakeDaytona:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    async def _close_backend(self) -> None:
        with contextlib.suppress(Exception):
            await self.backend.aclose()

    def __enter__(self) -> FakeDaytona:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeDaytona:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)
