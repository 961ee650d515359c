"""The Daytona provider: sandboxes on Daytona through its official async SDK (DESIGN.md §6).

The only module that imports ``daytona``. What differs from the local provider:

* **Ids.** Our sandbox id is the Daytona sandbox *name* (``create(sandbox_id=…)`` sets it; one
  is generated otherwise), and every call looks the sandbox up by that name, so
  ``SandboxInfo.sandbox_id`` is always our id, never Daytona's UUID.
* **Lifecycle.** Daytona starts a sandbox as it creates it, so ``create`` may report it started.
  File operations start a stopped sandbox on demand (its toolbox only answers while it runs);
  ``exec``, sessions and preview links refuse with :class:`SandboxNotRunning` instead.
* **exec and sessions** are Daytona sessions (:mod:`shoal.sandbox.daytona_process`); the
  output of a killed background session is remembered by this provider object only.
* **Ports.** Daytona has no raw TCP access: :meth:`preview_link` returns the sandbox's preview
  URL and token header, and :meth:`open_port` refuses.
* **Paths** are confined lexically to ``/workspace``; symlinks resolve inside the Daytona sandbox
  (a separate machine), so they cannot reach anything of ours. The image or snapshot should
  provide a ``/workspace`` the sandbox user may write (``start`` creates it when it can).
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from daytona import (  # noqa: TID251 - this is the adapter
    AsyncDaytona,
    AsyncSandbox,
    CreateSandboxFromImageParams,
    CreateSandboxFromSnapshotParams,
    DaytonaAuthenticationError,
    DaytonaBadRequestError,
    DaytonaConfig,
    DaytonaConnectionError,
    DaytonaError,
    DaytonaFileNotFoundError,
    DaytonaForbiddenError,
    DaytonaNotFoundError,
)
from daytona.common.daytona import CODE_TOOLBOX_LANGUAGE_LABEL  # noqa: TID251 - the adapter
from daytona_api_client_async import SandboxState as DaytonaState  # the SDK's async model

from shoal.errors import BadRequest, Conflict, ShoalError
from shoal.kit.time import utcnow
from shoal.sandbox.base import (
    WORKSPACE,
    ExecResult,
    FileEntry,
    FileNotFoundInSandbox,
    Network,
    OutputCallback,
    OutputCapture,
    PortConnection,
    PreviewLink,
    SandboxError,
    SandboxInfo,
    SandboxNotFound,
    SandboxNotRunning,
    SandboxSpec,
    SandboxState,
    SandboxUnavailable,
    SessionInfo,
    SessionOutput,
    check_sandbox_id,
)
from shoal.sandbox.daytona_process import Errors, Sessions, run_command
from shoal.sandbox.daytona_wire import PREVIEW_TOKEN_HEADER, wrap_command
from shoal.sandbox.paths import sandbox_path, workspace_parts

_GONE = {DaytonaState.DESTROYED, DaytonaState.DESTROYING}
_FAILED = {DaytonaState.ERROR, DaytonaState.BUILD_FAILED}
_HIDDEN_LABELS = {CODE_TOOLBOX_LANGUAGE_LABEL}


@dataclass(frozen=True, slots=True)
class DaytonaOptions:
    """Connection and defaults. ``snapshot``/``image`` pick what new sandboxes boot (a
    ``SandboxSpec.image`` wins); neither means Daytona's default snapshot."""

    api_key: str | None = None
    api_url: str | None = None
    target: str | None = None
    snapshot: str | None = None
    image: str | None = None
    auto_stop_minutes: int = 15
    timeout_seconds: float = 120.0


class DaytonaProvider:
    name = "daytona"
    stops_on_close = False

    def __init__(self, options: DaytonaOptions | None = None) -> None:
        self.options = options or DaytonaOptions()
        self._daytona: AsyncDaytona | None = None
        self._sessions = Sessions()

    def _client(self) -> AsyncDaytona:
        """The SDK client, made on first use (inside the event loop its sessions bind to)."""
        if self._daytona is None:
            o = self.options
            if not o.api_key:
                raise SandboxUnavailable("SHOAL_SANDBOX_PROVIDER=daytona needs DAYTONA_API_KEY.")
            config = DaytonaConfig(api_key=o.api_key, api_url=o.api_url, target=o.target)
            try:
                self._daytona = AsyncDaytona(config)
            except DaytonaError as exc:
                raise SandboxUnavailable(f"Daytona client: {exc}") from exc
        return self._daytona

    async def aclose(self) -> None:
        if self._daytona is not None:
            client, self._daytona = self._daytona, None
            with contextlib.suppress(DaytonaError, OSError):
                await client.close()  # type: ignore[no-untyped-call]

    # -- lifecycle -----------------------------------------------------------------------------

    async def _lookup(self, sandbox_id: str) -> AsyncSandbox:
        check_sandbox_id(sandbox_id)
        client = self._client()
        with _daytona_errors(sandbox_id):
            sandbox = await client.get(sandbox_id)
        if sandbox.state in _GONE:
            raise SandboxNotFound(sandbox_id)
        return sandbox

    async def _started(self, sandbox_id: str) -> AsyncSandbox:
        sandbox = await self._lookup(sandbox_id)
        if sandbox.state != DaytonaState.STARTED:
            raise SandboxNotRunning("The sandbox is not running.")
        return sandbox

    async def _ready(self, sandbox_id: str) -> AsyncSandbox:
        """The sandbox, started if it was not (its toolbox only answers while it runs)."""
        sandbox = await self._lookup(sandbox_id)
        if sandbox.state != DaytonaState.STARTED:
            await self._start(sandbox)
        return sandbox

    async def create(
        self, spec: SandboxSpec | None = None, *, sandbox_id: str | None = None
    ) -> SandboxInfo:
        spec = spec or SandboxSpec()
        name = check_sandbox_id(sandbox_id or f"sbx-{uuid.uuid4().hex[:20]}")
        with contextlib.suppress(SandboxNotFound):
            return self._info(await self._lookup(name))  # create is idempotent per id
        params = self._params(spec, name)
        with _daytona_errors(name):
            sandbox = await self._client().create(params, timeout=self.options.timeout_seconds)
        return self._info(sandbox)

    def _params(
        self, spec: SandboxSpec, name: str
    ) -> CreateSandboxFromImageParams | CreateSandboxFromSnapshotParams:
        auto_stop = spec.auto_stop_minutes
        common: dict[str, Any] = {
            "name": name,
            "env_vars": dict(spec.env),
            "labels": dict(spec.labels),
            "auto_stop_interval": self.options.auto_stop_minutes
            if auto_stop is None
            else auto_stop,
            "network_block_all": spec.network == "none",
        }
        image = spec.image or (None if self.options.snapshot else self.options.image)
        if image:
            return CreateSandboxFromImageParams(image=image, **common)
        return CreateSandboxFromSnapshotParams(snapshot=self.options.snapshot, **common)

    async def get(self, sandbox_id: str) -> SandboxInfo:
        return self._info(await self._lookup(sandbox_id))

    async def start(self, sandbox_id: str) -> SandboxInfo:
        sandbox = await self._lookup(sandbox_id)
        if sandbox.state != DaytonaState.STARTED:
            await self._start(sandbox)
        return self._info(sandbox)

    async def _start(self, sandbox: AsyncSandbox) -> None:
        self._sessions.forget(sandbox.name)
        with _daytona_errors(sandbox.name):
            await sandbox.start(timeout=self.options.timeout_seconds)
        with contextlib.suppress(DaytonaError):  # a snapshot may already provide it
            await sandbox.fs.create_folder(WORKSPACE, "755")

    async def stop(self, sandbox_id: str) -> SandboxInfo:
        sandbox = await self._lookup(sandbox_id)
        self._sessions.forget(sandbox_id)
        if sandbox.state == DaytonaState.STARTED:
            with _daytona_errors(sandbox_id):
                await sandbox.stop(timeout=self.options.timeout_seconds)
        return self._info(sandbox)

    async def set_network(self, sandbox_id: str, network: Network) -> SandboxInfo:
        """Daytona changes a sandbox's outbound policy on its runner, running or not."""
        sandbox = await self._lookup(sandbox_id)
        with _daytona_errors(sandbox_id):
            await sandbox.update_network_settings(
                network_block_all=network == "none",
                request_timeout=self.options.timeout_seconds,
            )
        return self._info(sandbox)

    async def delete(self, sandbox_id: str) -> None:
        sandbox = await self._lookup(sandbox_id)
        self._sessions.forget(sandbox_id)
        with _daytona_errors(sandbox_id):
            await sandbox.delete(timeout=self.options.timeout_seconds)

    def _info(self, sandbox: AsyncSandbox) -> SandboxInfo:
        if sandbox.state == DaytonaState.STARTED:
            state = SandboxState.STARTED
        elif sandbox.state in _FAILED:
            state = SandboxState.ERROR
        else:
            state = SandboxState.STOPPED
        labels = {k: v for k, v in (sandbox.labels or {}).items() if k not in _HIDDEN_LABELS}
        blocked = getattr(sandbox, "network_block_all", None)
        return SandboxInfo(
            sandbox_id=sandbox.name,
            state=state,
            network="none" if blocked else "open",
            labels=labels,
            created_at=_parse_time(sandbox.created_at),
            provider=self.name,
        )

    # -- commands (shoal.sandbox.daytona_process) ---------------------------------------------

    async def exec(
        self,
        sandbox_id: str,
        command: str,
        *,
        cwd: str = WORKSPACE,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 300.0,  # noqa: ASYNC109 - enforced by deleting the session
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        line = wrap_command(command, sandbox_path(workspace_parts(cwd)), env)
        sandbox = await self._started(sandbox_id)
        capture = OutputCapture(on_output)
        errors = functools.partial(_daytona_errors, sandbox_id)
        code, timed_out = await run_command(sandbox.process, errors, line, timeout, capture)
        return capture.result(code, timed_out=timed_out)

    async def start_session(
        self,
        sandbox_id: str,
        name: str,
        command: str,
        *,
        cwd: str = WORKSPACE,
        env: Mapping[str, str] | None = None,
    ) -> SessionInfo:
        line = wrap_command(command, sandbox_path(workspace_parts(cwd)), env)
        process, errors = await self._process(sandbox_id)
        return await self._sessions.start(process, errors, sandbox_id, name, command, line)

    async def read_session(self, sandbox_id: str, name: str) -> SessionOutput:
        process, errors = await self._process(sandbox_id)
        return await self._sessions.read(process, errors, sandbox_id, name)

    async def kill_session(self, sandbox_id: str, name: str) -> SessionInfo:
        process, errors = await self._process(sandbox_id)
        return await self._sessions.kill(process, errors, sandbox_id, name)

    async def list_sessions(self, sandbox_id: str) -> list[SessionInfo]:
        process, errors = await self._process(sandbox_id)
        return await self._sessions.list(process, errors, sandbox_id)

    async def _process(self, sandbox_id: str) -> tuple[Any, Errors]:
        sandbox = await self._started(sandbox_id)
        return sandbox.process, functools.partial(_daytona_errors, sandbox_id)

    # -- ports ---------------------------------------------------------------------------------

    async def preview_link(self, sandbox_id: str, port: int) -> PreviewLink | None:
        sandbox = await self._started(sandbox_id)
        with _daytona_errors(sandbox_id):
            link = await sandbox.get_preview_link(port)
        return PreviewLink(link.url, {PREVIEW_TOKEN_HEADER: link.token})

    async def open_port(self, sandbox_id: str, port: int) -> PortConnection:
        raise SandboxError(
            "Daytona sandboxes offer no raw TCP connections; the port relay reaches them "
            "through preview links (preview_link)."
        )

    # -- files ---------------------------------------------------------------------------------

    async def list_files(self, sandbox_id: str, path: str = WORKSPACE) -> list[FileEntry]:
        where = sandbox_path(workspace_parts(path))
        sandbox = await self._ready(sandbox_id)
        with _daytona_errors(sandbox_id, path=where):
            infos = await sandbox.fs.list_files(where)
        entries = [
            FileEntry(
                name=info.name,
                path=f"{where.rstrip('/')}/{info.name}",
                is_dir=info.is_dir,
                size=0 if info.is_dir else info.size,
                mod_time=_parse_time(info.modified_at),
            )
            for info in infos
        ]
        return sorted(entries, key=lambda e: (not e.is_dir, e.name))

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        parts = workspace_parts(path)
        if not parts:
            raise BadRequest(f"Is a directory: {WORKSPACE}")
        sandbox = await self._ready(sandbox_id)
        with _daytona_errors(sandbox_id, path=sandbox_path(parts)):
            data = await sandbox.fs.download_file(sandbox_path(parts))
        return data

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> FileEntry:
        parts = workspace_parts(path)
        if not parts:
            raise BadRequest(f"Is a directory: {WORKSPACE}")
        where = sandbox_path(parts)
        sandbox = await self._ready(sandbox_id)
        with _daytona_errors(sandbox_id, path=where):
            if len(parts) > 1:
                await sandbox.fs.create_folder(sandbox_path(parts[:-1]), "755")
            await sandbox.fs.upload_file(bytes(data), where)
        return FileEntry(parts[-1], where, False, len(data), utcnow())

    async def delete_file(self, sandbox_id: str, path: str) -> None:
        parts = workspace_parts(path)
        if not parts:
            raise BadRequest(f"Refusing to delete {WORKSPACE} itself.")
        sandbox = await self._ready(sandbox_id)
        with _daytona_errors(sandbox_id, path=sandbox_path(parts)):
            await sandbox.fs.delete_file(sandbox_path(parts), recursive=True)


# -- errors ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _daytona_errors(sandbox_id: str, *, path: str | None = None) -> Iterator[None]:
    """Turn the SDK's errors into shoal's (a missing file or sandbox → 404, …)."""
    try:
        yield
    except DaytonaError as exc:
        _raise(exc, sandbox_id, path=path)


def _raise(exc: DaytonaError, sandbox_id: str, *, path: str | None = None) -> NoReturn:
    message = str(exc)
    error: ShoalError
    if isinstance(exc, DaytonaFileNotFoundError) or (
        path is not None and isinstance(exc, DaytonaNotFoundError)
    ):
        error = FileNotFoundInSandbox(path or message)
    elif isinstance(exc, DaytonaNotFoundError):
        error = SandboxNotFound(sandbox_id)
    elif isinstance(exc, DaytonaAuthenticationError | DaytonaForbiddenError):
        error = SandboxUnavailable(f"Daytona refused the credentials (DAYTONA_API_KEY): {message}")
    elif isinstance(exc, DaytonaConnectionError):
        error = SandboxUnavailable(f"Daytona cannot be reached (DAYTONA_API_URL): {message}")
    elif isinstance(exc, DaytonaBadRequestError):
        error = BadRequest(message)
    elif exc.status_code == 409:
        error = Conflict(message)
    else:
        error = SandboxError(f"Daytona: {message}")
    raise error from exc


def _parse_time(value: str | None) -> datetime:
    if value:
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=utcnow().tzinfo)
    return utcnow()
