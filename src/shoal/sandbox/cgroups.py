"""Per-sandbox cgroups: CPU bandwidth, memory and process-count limits, and "kill them all".

cgroup v2 is used when this process may create child groups with the ``cpu``, ``memory`` and
``pids`` controllers enabled (root in a container with its own cgroup namespace, or a systemd
service with ``Delegate=yes``); otherwise the v1 ``pids``/``memory``/``cpu`` hierarchies when
they are mounted and writable. Groups are created below this process's own group, so whatever
accounts for the server also accounts for its sandboxes. When neither works, :func:`open_cgroup`
returns ``None`` and the rlimits the exec agent sets are the only limits.

The functions here block (small sysfs writes); async callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

ROOT = Path("/sys/fs/cgroup")
_GROUP = "shoal-sandboxes"
_V1_CONTROLLERS = ("pids", "memory", "cpu")
_CPU_PERIOD_US = 100_000


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    cpus: float
    memory_bytes: int
    pids: int


class Cgroup(Protocol):
    """One sandbox's group (possibly spread over several v1 hierarchies)."""

    kind: str

    def add(self, pid: int) -> None: ...

    def pids(self) -> list[int]: ...

    def kill(self) -> None: ...

    def remove(self) -> None: ...


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per controller (``""`` is the v2 unified one)."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            for name in controllers.split(","):
                paths[name.removeprefix("name=")] = path
    return paths


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _read_pids(files: list[Path]) -> list[int]:
    found: set[int] = set()
    for path in files:
        with contextlib.suppress(OSError):
            found.update(int(x) for x in path.read_text().split())
    return sorted(found)


def _kill_until_empty(cgroup: Cgroup, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (pids := cgroup.pids()) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


class CgroupV2:
    kind = "v2"

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str, limits: CgroupLimits) -> CgroupV2 | None:
        if not (ROOT / "cgroup.controllers").exists():
            return None
        parent = ROOT / _own_paths().get("", "/").lstrip("/") / _GROUP
        try:
            parent.mkdir(exist_ok=True)
            enabled = (parent.parent / "cgroup.subtree_control").read_text().split()
            if not {"cpu", "memory", "pids"} <= set(enabled):
                _write(parent.parent / "cgroup.subtree_control", "+cpu +memory +pids")
            _write(parent / "cgroup.subtree_control", "+cpu +memory +pids")
            path = parent / name
            path.mkdir(exist_ok=True)
            quota = max(1000, int(limits.cpus * _CPU_PERIOD_US))
            _write(path / "cpu.max", f"{quota} {_CPU_PERIOD_US}")
            _write(path / "memory.max", str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                _write(path / "memory.swap.max", "0")
            _write(path / "pids.max", str(limits.pids))
        except OSError as exc:
            log.info("sandbox.cgroup_v2_unavailable", error=str(exc))
            return None
        return cls(path)

    def add(self, pid: int) -> None:
        _write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return _read_pids([self.path / "cgroup.procs"])

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            _write(self.path / "cgroup.kill", "1")
        _kill_until_empty(self)

    def remove(self) -> None:
        for path in (self.path, self.path.parent):  # the parent goes once the last one does
            with contextlib.suppress(OSError):
                path.rmdir()


class CgroupV1:
    kind = "v1"

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    @classmethod
    def create(cls, name: str, limits: CgroupLimits) -> CgroupV1 | None:
        own = _own_paths()
        paths: dict[str, Path] = {}
        try:
            for controller in _V1_CONTROLLERS:
                base = ROOT / controller
                if controller not in own or not (base / "cgroup.procs").exists():
                    continue
                path = base / own[controller].lstrip("/") / _GROUP / name
                path.mkdir(parents=True, exist_ok=True)
                paths[controller] = path
            if "pids" not in paths:
                raise OSError("the v1 pids controller is not available")
            _write(paths["pids"] / "pids.max", str(limits.pids))
            if "memory" in paths:
                _write(paths["memory"] / "memory.limit_in_bytes", str(limits.memory_bytes))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    _write(
                        paths["memory"] / "memory.memsw.limit_in_bytes", str(limits.memory_bytes)
                    )
            if "cpu" in paths:
                _write(paths["cpu"] / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
                quota = max(1000, int(limits.cpus * _CPU_PERIOD_US))
                _write(paths["cpu"] / "cpu.cfs_quota_us", str(quota))
        except OSError as exc:
            log.info("sandbox.cgroup_v1_unavailable", error=str(exc))
            cls(paths).remove()
            return None
        return cls(paths)

    def add(self, pid: int) -> None:
        for path in self.paths.values():
            _write(path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return _read_pids([path / "cgroup.procs" for path in self.paths.values()])

    def kill(self) -> None:
        _kill_until_empty(self)

    def remove(self) -> None:
        for path in self.paths.values():
            for directory in (path, path.parent):  # the parent goes once the last one does
                with contextlib.suppress(OSError):
                    directory.rmdir()


def open_cgroup(name: str, limits: CgroupLimits) -> Cgroup | None:
    """Create (or reuse) the group ``name`` with ``limits``; ``None`` when cgroups are not ours
    to use here."""
    return CgroupV2.create(name, limits) or CgroupV1.create(name, limits)


def existing_cgroup(name: str) -> Cgroup | None:
    """The group ``name`` if it exists (to kill what is left in it), without changing limits."""
    own = _own_paths()
    v2 = ROOT / own.get("", "/").lstrip("/") / _GROUP / name
    if (ROOT / "cgroup.controllers").exists() and v2.is_dir():
        return CgroupV2(v2)
    paths = {
        c: ROOT / c / own[c].lstrip("/") / _GROUP / name
        for c in _V1_CONTROLLERS
        if c in own and (ROOT / c / own[c].lstrip("/") / _GROUP / name).is_dir()
    }
    return CgroupV1(paths) if paths else None
