"""Host uids for sandboxes: one unprivileged uid per sandbox, from a configured range.

Allocations live in a small JSON file guarded by ``flock`` so several shoal processes on one
host (``serve`` and ``worker``) agree. A uid that belongs to a host account (``/etc/passwd``) is
skipped. Blocking; async callers run these in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

from shoal.sandbox.base import SandboxUnavailable


class UidAllocator:
    def __init__(self, state_file: Path, *, base: int, count: int) -> None:
        self.state_file = state_file
        self.base = base
        self.count = count

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, int]]:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.state_file.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                table: dict[str, int] = json.loads(self.state_file.read_text() or "{}")
            except (FileNotFoundError, ValueError):
                table = {}
            before = dict(table)
            yield table
            if table != before:
                temp = self.state_file.with_suffix(".tmp")
                temp.write_text(json.dumps(table, sort_keys=True))
                os.replace(temp, self.state_file)

    def lookup(self, sandbox_id: str) -> int | None:
        with self._locked() as table:
            return table.get(sandbox_id)

    def allocate(self, sandbox_id: str) -> int:
        """The sandbox's uid (the same one on every call until :meth:`release`)."""
        with self._locked() as table:
            if sandbox_id in table:
                return table[sandbox_id]
            taken = set(table.values())
            for uid in range(self.base, self.base + self.count):
                if uid not in taken and not _host_account(uid):
                    table[sandbox_id] = uid
                    return uid
        raise SandboxUnavailable(
            f"All {self.count} sandbox uids from {self.base} are in use: raise "
            "SHOAL_SANDBOX_UID_COUNT or delete unused sandboxes."
        )

    def release(self, sandbox_id: str) -> None:
        with self._locked() as table:
            table.pop(sandbox_id, None)


def _host_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def processes_of(uid: int) -> list[int]:
    """Live host pids whose real uid is ``uid`` (every process of that sandbox, wherever it
    is); zombies do not count, they hold nothing but a pid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        state, uids = fields.get("State", "").split(), fields.get("Uid", "").split()
        if uids and int(uids[0]) == uid and state[:1] != ["Z"]:
            found.append(int(entry))
    return found


SETPRIV = "/usr/bin/setpriv"


def as_user(argv: list[str], uid: int | None) -> list[str]:
    """``argv`` run as uid and gid ``uid`` with no supplementary groups (``None``: unchanged).

    Through setpriv(1) rather than subprocess's ``user=``/``group=``: uvloop — the event loop
    uvicorn runs ``shoal serve`` on — does not support those arguments."""
    if uid is None:
        return argv
    return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]
