"""The local provider: one long-lived bubblewrap instance per started sandbox.

Layout under ``$SHOAL_DATA_DIR/sandboxes/<id>/`` (root-owned, ``0711``): ``sandbox.json`` (spec),
``workspace/`` (the sandbox's ``/workspace``, owned by its uid; see :mod:`.workspace`), ``run/``
(``0700``, never visible inside): ``agent.sock`` — created and listened on by the host and handed
to the agent as an inherited fd — ``agent.log`` and ``instance.json``.

Start: the sandbox's cgroup is made, ``sh`` is spawned as the sandbox uid and waits on stdin
until its pid is in the cgroup, then execs ``bwrap`` → the exec agent (:mod:`.agent`); with
network ``open`` slirp4netns is attached once the agent answers, before ``start`` returns (so
before any command runs). Stop: SIGKILL the sandbox's processes (pid 1 first: the kernel then
kills its whole pid namespace), empty the cgroup, and — as root, where every sandbox has its own
uid — ``kill(-1)`` as that uid until no process of it is left on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from shoal.kit.time import utcnow
from shoal.sandbox import cgroups
from shoal.sandbox.base import (
    WORKSPACE,
    ExecResult,
    FileEntry,
    Network,
    OutputCallback,
    PortConnection,
    PreviewLink,
    SandboxError,
    SandboxInfo,
    SandboxNotFound,
    SandboxSpec,
    SandboxState,
    SandboxUnavailable,
    SessionInfo,
    SessionOutput,
    check_sandbox_id,
)
from shoal.sandbox.bwrap import bwrap_features, check_bubblewrap
from shoal.sandbox.client import AgentClient, listen
from shoal.sandbox.launch import Instance, LocalLimits, launch
from shoal.sandbox.paths import WorkspaceFS
from shoal.sandbox.procs import kill_sandbox, recorded_pids
from shoal.sandbox.uids import UidAllocator
from shoal.sandbox.workspace import WorkspaceStore

log = structlog.get_logger(__name__)
_AGENT_SOURCE = Path(__file__).with_name("agent.py")
_UNSAFE = (
    "SHOAL_SANDBOX_PROVIDER=unsafe-local: commands run WITHOUT any isolation, with this "
    "host's network and files (network 'none' is not enforced)"
)


class LocalProvider:
    """Sandboxes on this host, isolated by bubblewrap (``isolation=False``: unsafe-local)."""

    name = "local"
    stops_on_close = True

    def __init__(
        self,
        data_dir: Path,
        *,
        limits: LocalLimits | None = None,
        uid_base: int = 200_000,
        uid_count: int = 10_000,
        workspace_images: bool | None = None,
        isolation: bool = True,
    ) -> None:
        self.root = data_dir.resolve() / "sandboxes"
        self.limits = limits or LocalLimits()
        self.isolation = isolation
        self.per_sandbox_uid = os.geteuid() == 0
        self.uids = UidAllocator(self.root / "uids.json", base=uid_base, count=uid_count)
        self.store = WorkspaceStore(self.limits.workspace_mb * 2**20, images=workspace_images)
        self._instances: dict[str, Instance] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._checked: set[int | None] = set()
        if not self.per_sandbox_uid:
            log.warning(
                "sandbox.shared_uid",
                detail="shoal is not root: all sandboxes run as its own uid (separate uids "
                "per sandbox need root)",
            )

    # -- bookkeeping ---------------------------------------------------------------------------

    def _dir(self, sandbox_id: str) -> Path:
        return self.root / check_sandbox_id(sandbox_id)

    def _lock(self, sandbox_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    async def _meta(self, sandbox_id: str) -> dict[str, Any]:
        path = self._dir(sandbox_id) / "sandbox.json"
        try:
            data: dict[str, Any] = json.loads(await asyncio.to_thread(path.read_text))
        except FileNotFoundError:
            raise SandboxNotFound(sandbox_id) from None
        return data

    async def _uid(self, sandbox_id: str) -> int | None:
        if not self.per_sandbox_uid:
            return None
        return await asyncio.to_thread(self.uids.allocate, sandbox_id)

    def _client(self, sandbox_id: str) -> AgentClient:
        return AgentClient(self._dir(sandbox_id) / "run" / "agent.sock")

    def _info(self, meta: Mapping[str, Any], state: SandboxState) -> SandboxInfo:
        return SandboxInfo(
            sandbox_id=str(meta["sandbox_id"]),
            state=state,
            network="open" if meta.get("network") == "open" else "none",
            labels=dict(meta.get("labels") or {}),
            created_at=datetime.fromisoformat(str(meta["created_at"])),
            provider=self.name,
        )

    async def _fs(self, sandbox_id: str) -> WorkspaceFS:
        await self._meta(sandbox_id)
        uid = await self._uid(sandbox_id)
        owner = (uid, uid) if uid is not None else None
        workspace = await self.store.prepare(self._dir(sandbox_id), owner)
        return WorkspaceFS(
            workspace,
            owner=owner,
            quota_bytes=None if self.store.hard_limit else self.limits.workspace_mb * 2**20,
            max_file_bytes=self.limits.file_mb * 2**20,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def create(
        self, spec: SandboxSpec | None = None, *, sandbox_id: str | None = None
    ) -> SandboxInfo:
        spec = spec or SandboxSpec()
        sandbox_id = check_sandbox_id(sandbox_id or os.urandom(16).hex())
        directory = self._dir(sandbox_id)
        meta = {
            "sandbox_id": sandbox_id,
            "network": spec.network,
            "env": dict(spec.env),
            "labels": dict(spec.labels),
            "created_at": utcnow().isoformat(),
        }
        await asyncio.to_thread(_make_dirs, self.root, directory)
        path = directory / "sandbox.json"
        if await asyncio.to_thread(path.exists):
            return self._info(await self._meta(sandbox_id), await self._state(sandbox_id))
        await asyncio.to_thread(path.write_text, json.dumps(meta))
        await self._fs(sandbox_id)
        return self._info(meta, SandboxState.STOPPED)

    async def _state(self, sandbox_id: str) -> SandboxState:
        running = await self._client(sandbox_id).ping()
        return SandboxState.STARTED if running else SandboxState.STOPPED

    async def get(self, sandbox_id: str) -> SandboxInfo:
        meta = await self._meta(sandbox_id)
        return self._info(meta, await self._state(sandbox_id))

    async def start(self, sandbox_id: str) -> SandboxInfo:
        async with self._lock(sandbox_id):
            meta = await self._meta(sandbox_id)
            if await self._client(sandbox_id).ping():
                return self._info(meta, SandboxState.STARTED)
            uid = await self._uid(sandbox_id)
            if not self.isolation:
                log.warning("sandbox.unsafe_local_start", sandbox_id=sandbox_id, detail=_UNSAFE)
            await self._kill_everything(sandbox_id, uid)
            fs = await self._fs(sandbox_id)
            instance = await self._launch(sandbox_id, meta, uid, fs.root)
            self._instances[sandbox_id] = instance
            try:
                await self._wait_ready(sandbox_id, instance)
                if self.isolation and meta.get("network") == "open":
                    record = self._dir(sandbox_id) / "run" / "instance.json"
                    await instance.attach_network(uid, record)
                instance.release_sync_fd()
            except BaseException:
                await self._kill_everything(sandbox_id, uid)
                raise
            return self._info(meta, SandboxState.STARTED)

    async def _launch(
        self, sandbox_id: str, meta: Mapping[str, Any], uid: int | None, workspace: Path
    ) -> Instance:
        if self.isolation and uid not in self._checked:
            await check_bubblewrap(uid)
            self._checked.add(uid)
        if uid is not None:
            await asyncio.to_thread(_check_searchable, workspace)
        run = self._dir(sandbox_id) / "run"
        listener = await asyncio.to_thread(listen, run / "agent.sock")
        try:
            return await launch(
                sandbox_id=sandbox_id,
                run_dir=run,
                listener=listener,
                uid=uid,
                network="open" if meta.get("network") == "open" else "none",
                env={str(k): str(v) for k, v in (meta.get("env") or {}).items()},
                workspace=workspace,
                limits=self.limits,
                isolation=self.isolation,
                agent_source=await asyncio.to_thread(_AGENT_SOURCE.read_bytes),
                features=await asyncio.to_thread(bwrap_features) if self.isolation else None,
            )
        finally:
            listener.close()

    async def _wait_ready(self, sandbox_id: str, instance: Instance) -> None:
        client = self._client(sandbox_id)
        deadline = time.monotonic() + 15
        while not await client.ping():
            if instance.process.returncode is not None or time.monotonic() > deadline:
                text = await asyncio.to_thread(_tail, self._dir(sandbox_id) / "run" / "agent.log")
                raise SandboxError(f"The sandbox failed to start: {text or 'no output'}")
            await asyncio.sleep(0.02)

    async def stop(self, sandbox_id: str) -> SandboxInfo:
        async with self._lock(sandbox_id):
            meta = await self._meta(sandbox_id)
            await self._kill_everything(sandbox_id, await self._uid(sandbox_id))
            return self._info(meta, SandboxState.STOPPED)

    async def set_network(self, sandbox_id: str, network: Network) -> SandboxInfo:
        """The network namespace is set up when the sandbox starts: a running one restarts."""
        async with self._lock(sandbox_id):
            meta = {**await self._meta(sandbox_id), "network": network}
            path = self._dir(sandbox_id) / "sandbox.json"
            await asyncio.to_thread(path.write_text, json.dumps(meta))
            running = await self._client(sandbox_id).ping()
        if not running:
            return self._info(meta, SandboxState.STOPPED)
        await self.stop(sandbox_id)
        return await self.start(sandbox_id)

    async def _kill_everything(self, sandbox_id: str, uid: int | None) -> None:
        """Kill the instance and every process of the sandbox; wait until none is left."""
        instance = self._instances.pop(sandbox_id, None)
        run = self._dir(sandbox_id) / "run"
        recorded = [instance.child_pid, instance.process.pid] if instance else []
        recorded += await asyncio.to_thread(recorded_pids, run / "instance.json")
        group = await asyncio.to_thread(cgroups.existing_cgroup, f"sbx-{sandbox_id}")
        await kill_sandbox(sandbox_id, recorded, uid=uid, group=group)
        if instance is not None:
            await instance.close()
        if group is not None:
            await asyncio.to_thread(group.remove)
        for name in ("agent.sock", "instance.json"):
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread((run / name).unlink)

    async def delete(self, sandbox_id: str) -> None:
        directory = self._dir(sandbox_id)
        await self._meta(sandbox_id)
        await self.stop(sandbox_id)
        await self.store.release(directory)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        await asyncio.to_thread(self.uids.release, sandbox_id)
        self._locks.pop(sandbox_id, None)

    async def aclose(self) -> None:
        for sandbox_id in list(self._instances):
            try:
                await self.stop(sandbox_id)
            except Exception:
                log.exception("sandbox.stop_failed", sandbox_id=sandbox_id)

    # -- commands ------------------------------------------------------------------------------

    async def exec(
        self,
        sandbox_id: str,
        command: str,
        *,
        cwd: str = WORKSPACE,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 300.0,  # noqa: ASYNC109 - enforced inside the sandbox
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        return await self._client(sandbox_id).exec(
            command,
            cwd=cwd,
            env=env,
            timeout=timeout,
            cpu_seconds=self.limits.cpu_seconds,
            on_output=on_output,
        )

    async def start_session(
        self,
        sandbox_id: str,
        name: str,
        command: str,
        *,
        cwd: str = WORKSPACE,
        env: Mapping[str, str] | None = None,
    ) -> SessionInfo:
        return await self._client(sandbox_id).start_session(name, command, cwd=cwd, env=env)

    async def read_session(self, sandbox_id: str, name: str) -> SessionOutput:
        return await self._client(sandbox_id).read_session(name)

    async def kill_session(self, sandbox_id: str, name: str) -> SessionInfo:
        return await self._client(sandbox_id).kill_session(name)

    async def list_sessions(self, sandbox_id: str) -> list[SessionInfo]:
        return await self._client(sandbox_id).list_sessions()

    async def open_port(self, sandbox_id: str, port: int) -> PortConnection:
        return await self._client(sandbox_id).connect(port)

    async def preview_link(self, sandbox_id: str, port: int) -> PreviewLink | None:
        return None  # the relay dials the port itself (open_port)

    # -- files ---------------------------------------------------------------------------------

    async def list_files(self, sandbox_id: str, path: str = WORKSPACE) -> list[FileEntry]:
        fs = await self._fs(sandbox_id)
        return await asyncio.to_thread(fs.listdir, path)

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        fs = await self._fs(sandbox_id)
        return await asyncio.to_thread(fs.read, path)

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> FileEntry:
        fs = await self._fs(sandbox_id)
        return await asyncio.to_thread(fs.write, path, data)

    async def delete_file(self, sandbox_id: str, path: str) -> None:
        fs = await self._fs(sandbox_id)
        await asyncio.to_thread(fs.delete, path)


class UnsafeLocalProvider(LocalProvider):
    """Plain subprocesses in the workspace directory — NO isolation. Explicit opt-in only."""

    name = "unsafe-local"

    def __init__(self, data_dir: Path, **kwargs: Any) -> None:
        kwargs["isolation"] = False
        super().__init__(data_dir, **kwargs)
        log.warning("sandbox.unsafe_local", detail=_UNSAFE)


# -- helpers -----------------------------------------------------------------------------------


def _make_dirs(root: Path, directory: Path) -> None:
    for path in (root, directory):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o711)  # noqa: S103 - bwrap (as the sandbox uid) must traverse
    run = directory / "run"
    run.mkdir(exist_ok=True)
    os.chmod(run, 0o700)


def _check_searchable(workspace: Path) -> None:
    """bubblewrap (or the bare agent) runs as the sandbox uid and must reach the workspace."""
    for path in [workspace.parent, *workspace.parent.parents]:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            raise SandboxUnavailable(
                f"Sandbox uids cannot reach {workspace}: {path} is not searchable by other "
                f"users. Run `chmod o+x {path}` or put SHOAL_DATA_DIR elsewhere."
            )


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except FileNotFoundError:
        return ""
