"""Starting one local sandbox instance: cgroup, bubblewrap (or a bare agent), network."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shoal.sandbox import cgroups, network
from shoal.sandbox.base import WORKSPACE, Network, SandboxError, SandboxUnavailable
from shoal.sandbox.bwrap import (
    AGENT_PATH,
    INSIDE_PYTHON,
    PATH,
    USERNS_HINT,
    BwrapCommand,
    base_env,
    etc_files,
)
from shoal.sandbox.pipes import read_pipe
from shoal.sandbox.uids import as_user

# Wait (as the sandbox uid) until our pid is in the cgroup, then become the real command.
_GATE = 'read -r _ && exec "$@" </dev/null'


@dataclass(frozen=True, slots=True)
class LocalLimits:
    """Per-sandbox limits. ``cpu_seconds`` is CPU time per command (RLIMIT_CPU); ``cpus`` the
    CPU bandwidth of the whole sandbox (cgroup); ``address_space_mb`` is per process."""

    cpu_seconds: int = 600
    cpus: float = 1.0
    memory_mb: int = 2048
    pids: int = 512
    workspace_mb: int = 2048
    file_mb: int = 1024
    address_space_mb: int = 8192


@dataclass(slots=True)
class Instance:
    """A running sandbox started by this process."""

    process: asyncio.subprocess.Process
    child_pid: int
    sync_fd: int = -1  # EOF when the sandbox is gone: slirp4netns's --exit-fd
    slirp: asyncio.subprocess.Process | None = None

    async def attach_network(self, uid: int | None, record: Path) -> None:
        """Give the (fully set up) sandbox network ``open``. Only after bubblewrap has finished
        configuring the namespace's loopback: slirp4netns configuring it at the same time
        makes bubblewrap's netlink requests fail."""
        self.slirp = await network.attach(self.child_pid, exit_fd=self.sync_fd, uid=uid)
        self.release_sync_fd()
        await asyncio.to_thread(_record, record, self)

    def release_sync_fd(self) -> None:
        if self.sync_fd >= 0:
            os.close(self.sync_fd)
            self.sync_fd = -1

    async def close(self) -> None:
        self.release_sync_fd()
        for proc in (self.process, self.slirp):
            if proc is None:
                continue
            # Both end by themselves once the sandbox is dead (slirp4netns on its exit fd).
            # Killing first would race asyncio's child watcher for the exit status.
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=2)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), timeout=5)


async def launch(
    *,
    sandbox_id: str,
    run_dir: Path,
    listener: socket.socket,
    uid: int | None,
    network: Network,
    env: Mapping[str, str],
    workspace: Path,
    limits: LocalLimits,
    isolation: bool,
    agent_source: bytes,
    features: frozenset[str] | None,
) -> Instance:
    """Start the sandbox; the agent then accepts on ``listener``. Raises with bwrap's words."""
    closing: list[int] = []
    group = await asyncio.to_thread(
        cgroups.open_cgroup,
        f"sbx-{sandbox_id}",
        cgroups.CgroupLimits(limits.cpus, limits.memory_mb * 2**20, limits.pids),
    )
    proc: asyncio.subprocess.Process | None = None
    try:
        agent_args = _agent_args(sandbox_id, listener.fileno(), limits, per_uid=uid is not None)
        info_r, info_w = os.pipe()
        sync_r, sync_w = os.pipe()
        closing += [info_r, info_w, sync_r, sync_w]
        data = {AGENT_PATH: agent_source}
        if isolation:
            data.update(etc_files(network))
        fds = {dest: _memfd(content) for dest, content in data.items()}
        closing += fds.values()
        if isolation:
            command = BwrapCommand(
                str(workspace), network, env, agent_args, fds, info_w, sync_w,
                tmp_size=min(limits.memory_mb, 1024) * 2**20,
            )  # fmt: skip
            argv = command.argv(features or frozenset())
            child_env, cwd = {"PATH": PATH}, "/"
        else:
            argv = [INSIDE_PYTHON, "-I", "-S", f"/proc/self/fd/{fds[AGENT_PATH]}", *agent_args]
            argv += ["--workspace", str(workspace)]
            child_env = base_env({**env, "HOME": str(workspace)})
            cwd = str(workspace)
        log_fd = os.open(run_dir / "agent.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        closing.append(log_fd)
        proc = await asyncio.create_subprocess_exec(
            *as_user(["/bin/sh", "-c", _GATE, "sh", *argv], uid),
            stdin=asyncio.subprocess.PIPE, stdout=log_fd, stderr=log_fd, cwd=cwd, env=child_env,
            pass_fds=(listener.fileno(), info_w, sync_w, *fds.values()),
            start_new_session=True,
        )  # fmt: skip
        for fd in (info_w, sync_w, *fds.values(), log_fd):
            os.close(fd)
            closing.remove(fd)
        if group is not None:
            await asyncio.to_thread(group.add, proc.pid)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        proc.stdin.close()
        child_pid = proc.pid
        if isolation:
            closing.remove(info_r)
            info = _parse(await read_pipe(info_r, complete=lambda d: bool(_parse(d)), seconds=20))
            if info is None:
                await asyncio.wait_for(proc.wait(), timeout=10)
                raise _start_failure(run_dir / "agent.log")
            child_pid = int(str(info["child-pid"]))
        instance = Instance(proc, child_pid)
        if isolation and network == "open":
            closing.remove(sync_r)
            instance.sync_fd = sync_r
        await asyncio.to_thread(_record, run_dir / "instance.json", instance)
        return instance
    except BaseException:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        if group is not None:
            await asyncio.to_thread(group.kill)
            await asyncio.to_thread(group.remove)
        raise
    finally:
        for fd in closing:
            with contextlib.suppress(OSError):
                os.close(fd)


def _agent_args(
    sandbox_id: str, listen_fd: int, limits: LocalLimits, *, per_uid: bool
) -> list[str]:
    args = ["--sandbox-id", sandbox_id, "--listen-fd", str(listen_fd), "--workspace", WORKSPACE]
    args += ["--address-space", str(limits.address_space_mb * 2**20)]
    args += ["--file-size", str(limits.file_mb * 2**20)]
    if per_uid:  # RLIMIT_NPROC counts per uid: only meaningful when the uid is the sandbox's
        args += ["--nproc", str(limits.pids)]
    return args


def _memfd(content: bytes) -> int:
    fd = os.memfd_create("shoal-sandbox-data")
    os.write(fd, content)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _parse(data: bytes) -> dict[str, object] | None:
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _start_failure(log_path: Path) -> Exception:
    try:
        text = log_path.read_text(errors="replace").strip()[-1500:]
    except OSError:
        text = ""
    lowered = text.lower()
    if "namespace" in lowered or "uid map" in lowered or "operation not permitted" in lowered:
        return SandboxUnavailable(f"bubblewrap cannot create a sandbox ({text}); {USERNS_HINT}.")
    return SandboxError(f"bubblewrap failed to start the sandbox: {text or 'no output'}")


def _record(path: Path, instance: Instance) -> None:
    slirp = instance.slirp.pid if instance.slirp else None
    data = {"child_pid": instance.child_pid, "process_pid": instance.process.pid, "slirp": slirp}
    path.write_text(json.dumps(data))
