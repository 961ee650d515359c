"""Finding and killing every host process of a local sandbox.

A sandbox's processes are: the ones its start recorded (checked by the ``--sandbox-id`` marker
on their command line, so a reused pid is never mistaken for one), every process in the pid
namespace they created, and their descendants. With per-sandbox uids the uid sweep in
:mod:`.local` catches anything else; this is what also works without them. Blocking
(``/proc`` reads) except :func:`kill_sandbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import structlog

from shoal.sandbox.base import SandboxError
from shoal.sandbox.cgroups import Cgroup
from shoal.sandbox.uids import as_user, processes_of

log = structlog.get_logger(__name__)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def alive(pid: int) -> bool:
    """Running (a zombie holds nothing but its pid)."""
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def sandbox_pids(sandbox_id: str, recorded: list[int]) -> list[int]:
    """Live pids of the sandbox, starting from the ``recorded`` ones."""
    marker = b"--sandbox-id\0" + sandbox_id.encode() + b"\0"
    roots = {pid for pid in recorded if pid > 1 and marker in _read(f"/proc/{pid}/cmdline")}
    if not roots:
        return []
    own = _pid_ns(os.getpid())
    namespaces = {ns for pid in roots if (ns := _pid_ns(pid)) is not None and ns != own}
    children: dict[int, list[int]] = {}
    found = set(roots)
    for pid in _pids():
        if namespaces and _pid_ns(pid) in namespaces:
            found.add(pid)
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            with contextlib.suppress(IndexError, ValueError):
                children.setdefault(int(stat.rsplit(b")", 1)[1].split()[1]), []).append(pid)
    queue = list(found)
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in found:
                found.add(child)
                queue.append(child)
    return sorted(pid for pid in found if alive(pid))


def recorded_pids(path: Path) -> list[int]:
    """Pids a start (perhaps by another shoal process) recorded in ``instance.json``."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [int(data.get("child_pid") or 0), int(data.get("process_pid") or 0)]


async def kill_sandbox(
    sandbox_id: str, recorded: list[int], *, uid: int | None, group: Cgroup | None
) -> None:
    """SIGKILL everything of the sandbox and wait until nothing of it runs (else raise)."""
    pids = await asyncio.to_thread(sandbox_pids, sandbox_id, recorded)
    first = [pid for pid in recorded if pid in pids]  # its pid 1: the namespace dies with it
    for pid in [*first, *pids]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if group is not None:
        await asyncio.to_thread(group.kill)
    if uid is not None:
        await _sweep_uid(uid)
    deadline = time.monotonic() + 5
    while left := [pid for pid in pids if await asyncio.to_thread(alive, pid)]:
        if time.monotonic() > deadline:
            raise SandboxError(f"Sandbox processes survived stop: {left}.")
        await asyncio.sleep(0.02)


async def _sweep_uid(uid: int, patience: float = 5.0) -> None:
    """``kill(-1, SIGKILL)`` as ``uid`` until the host has no live process of that uid."""
    deadline = time.monotonic() + patience
    while await asyncio.to_thread(processes_of, uid):
        if time.monotonic() > deadline:
            log.error("sandbox.processes_survived", uid=uid)
            raise SandboxError(f"Processes of sandbox uid {uid} survived stop.")
        argv = ["/usr/bin/python3", "-I", "-S", "-c", "import os, signal; os.kill(-1, 9)"]
        proc = await asyncio.create_subprocess_exec(
            *as_user(argv, uid), cwd="/",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()
        await asyncio.sleep(0.02)
