"""Escape attempts against the local bubblewrap provider — each must be contained.

Never run against unsafe-local (it has no isolation to test). Every test needs bubblewrap.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from shoal.errors import PathOutsideWorkspace
from shoal.sandbox import LocalLimits, LocalProvider, SandboxSpec, WorkspaceFull
from shoal.sandbox.uids import processes_of
from tests.sandbox.conftest import TEST_LIMITS, local_provider, require_bubblewrap

pytestmark = pytest.mark.services

Start = Callable[..., Coroutine[Any, Any, str]]


@pytest.fixture
def limits() -> LocalLimits:
    return TEST_LIMITS


@pytest.fixture
async def local(sandbox_root: Path, limits: LocalLimits) -> AsyncIterator[LocalProvider]:
    await require_bubblewrap()
    provider = local_provider(sandbox_root, limits)
    yield provider
    await provider.aclose()


@pytest.fixture
async def start(local: LocalProvider) -> AsyncIterator[Start]:
    made: list[str] = []

    async def factory(network: str = "none") -> str:
        info = await local.create(SandboxSpec(network=network))  # type: ignore[arg-type]
        made.append(info.sandbox_id)
        await local.start(info.sandbox_id)
        return info.sandbox_id

    yield factory
    for sandbox_id in made:
        await local.delete(sandbox_id)


def _host_port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


CONNECT = (
    "python3 -c \"import socket,sys; s=socket.socket(); s.settimeout(2); "
    "sys.exit(s.connect_ex(('{host}', {port})) == 0 and 42 or 0)\""
)  # fmt: skip


async def _connects(local: LocalProvider, sandbox_id: str, host: str, port: int) -> bool:
    result = await local.exec(sandbox_id, CONNECT.format(host=host, port=port), timeout=10)
    assert not result.timed_out
    return result.exit_code == 42


# -- host files --------------------------------------------------------------------------------


async def test_host_secrets_and_homes_are_invisible(local: LocalProvider, start: Start) -> None:
    assert Path("/etc/shadow").exists()
    sandbox_id = await start()
    for command in (
        "cat /etc/shadow",
        "ls /root",
        "ls /home",
        "ls /srv",
        "ls /var/tmp",
        f"ls {local.root}",
    ):
        result = await local.exec(sandbox_id, command)
        assert result.exit_code != 0, command
    ps = await local.exec(sandbox_id, "ps -eo pid,args")
    assert "pytest" not in ps.stdout
    assert len(ps.stdout.strip().splitlines()) <= 5  # header, bwrap init, agent, bash, ps


async def test_nothing_outside_the_workspace_is_writable(
    local: LocalProvider, start: Start
) -> None:
    sandbox_id = await start()
    for target in ("/usr/evil", "/etc/evil", "/evil", "/run/evil", "/usr/local/bin/evil"):
        result = await local.exec(sandbox_id, f"touch {target}")
        assert result.exit_code != 0, target
        assert not Path(target).exists()
    assert (await local.exec(sandbox_id, "touch /workspace/ok /tmp/ok")).exit_code == 0


async def test_runs_unprivileged_and_files_belong_to_the_sandbox_uid(
    local: LocalProvider, start: Start
) -> None:
    sandbox_id = await start()
    result = await local.exec(sandbox_id, "id -u; echo data > owned.txt; mkdir d")
    assert result.stdout.strip() != "0"
    status = await local.exec(sandbox_id, "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
    assert "CapEff:\t0000000000000000" in status.stdout
    assert (await local.exec(sandbox_id, "unshare -U true")).exit_code != 0
    await local.write_file(sandbox_id, "api.txt", b"x")
    uid = local.uids.lookup(sandbox_id) if os.geteuid() == 0 else os.geteuid()
    assert uid is not None
    if os.geteuid() == 0:
        assert uid >= 1000
    workspace = local.root / sandbox_id / "workspace"
    for name in ("owned.txt", "d", "api.txt"):
        info = (workspace / name).stat()
        assert (info.st_uid, info.st_gid) == (uid, uid), name


async def test_sandboxes_cannot_see_each_other(local: LocalProvider, start: Start) -> None:
    a, b = await start(), await start()
    await local.write_file(a, "secret-of-a.txt", b"x")
    find = "find / -path /proc -prune -o -path /usr -prune -o -name 'secret-of-a*' -print"
    result = await local.exec(b, f"{find} 2>/dev/null; echo done")
    assert result.stdout.strip() == "done"
    assert (await local.exec(b, f"ls {local.root / a}")).exit_code != 0
    if os.geteuid() == 0:
        assert local.uids.lookup(a) != local.uids.lookup(b)


# -- network -----------------------------------------------------------------------------------


async def test_network_none_has_loopback_only(local: LocalProvider, start: Start) -> None:
    sandbox_id = await start("none")
    for port in (5432, 6379):
        if _host_port_open(port):  # the host has it: the sandbox must not
            assert not await _connects(local, sandbox_id, "127.0.0.1", port)
    assert not await _connects(local, sandbox_id, "10.0.2.2", 5432)
    dns = await local.exec(
        sandbox_id, "python3 -c \"import socket; socket.getaddrinfo('example.com', 80)\""
    )
    assert dns.exit_code != 0
    links = await local.exec(sandbox_id, "cat /proc/net/dev")
    assert [line.split(":")[0].strip() for line in links.stdout.splitlines()[2:]] == ["lo"]


async def test_network_open_blocks_host_loopback_and_private_ranges(
    local: LocalProvider, start: Start
) -> None:
    sandbox_id = await start("open")
    routes = await local.exec(sandbox_id, "cat /proc/net/route")
    assert "tap0" in routes.stdout  # the user-mode stack is attached
    for port in (5432, 6379):
        assert not await _connects(local, sandbox_id, "127.0.0.1", port)
        assert not await _connects(local, sandbox_id, "10.0.2.2", port)  # slirp's host alias
    for host in ("10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1"):
        started = time.monotonic()
        assert not await _connects(local, sandbox_id, host, 80)
        assert time.monotonic() - started < 3, host


async def test_a_network_change_reaches_a_running_sandbox(
    local: LocalProvider, start: Start
) -> None:
    """Closing the network of a running sandbox takes effect at once (it restarts): nothing
    started under the old policy keeps it."""

    async def interfaces(sandbox_id: str) -> list[str]:
        links = await local.exec(sandbox_id, "cat /proc/net/dev")
        return [line.split(":")[0].strip() for line in links.stdout.splitlines()[2:]]

    sandbox_id = await start("open")
    assert "tap0" in await interfaces(sandbox_id)
    await local.start_session(sandbox_id, "old", "sleep 600")
    await local.set_network(sandbox_id, "none")
    assert await interfaces(sandbox_id) == ["lo"]
    assert await local.list_sessions(sandbox_id) == []  # the old processes are gone
    await local.set_network(sandbox_id, "open")
    assert "tap0" in await interfaces(sandbox_id)


# -- resource limits ---------------------------------------------------------------------------


async def test_fork_bomb_in_one_sandbox_leaves_another_usable(
    local: LocalProvider, start: Start
) -> None:
    a, b = await start(), await start()
    bomb = asyncio.create_task(local.exec(a, "bomb() { bomb | bomb & }; bomb; sleep 5", timeout=6))
    await asyncio.sleep(2)
    started = time.monotonic()
    result = await local.exec(b, "echo ok", timeout=10)
    assert result.stdout == "ok\n"
    assert time.monotonic() - started < 5
    if os.geteuid() == 0:
        uid = local.uids.lookup(a)
        assert uid is not None
        assert len(processes_of(uid)) <= TEST_LIMITS.pids + 8
    await bomb
    await local.stop(a)  # stop kills whatever the bomb left
    if os.geteuid() == 0:
        uid = local.uids.lookup(a)
        assert uid is not None
        assert processes_of(uid) == []


async def test_memory_bomb_is_contained(local: LocalProvider, start: Start) -> None:
    sandbox_id = await start()
    bomb = 'python3 -c "a = []\nwhile True: a.append(bytearray(64 * 2**20))"'
    result = await local.exec(sandbox_id, bomb, timeout=60)
    assert result.exit_code != 0
    assert not result.timed_out
    assert (await local.exec(sandbox_id, "echo alive")).stdout == "alive\n"


@pytest.mark.parametrize("limits", [LocalLimits(cpu_seconds=2, pids=64, workspace_mb=32)])
async def test_cpu_spin_is_killed_at_the_cpu_limit(local: LocalProvider, start: Start) -> None:
    sandbox_id = await start()
    result = await local.exec(sandbox_id, "python3 -c 'while True: pass'", timeout=60)
    assert not result.timed_out
    assert result.exit_code != 0
    assert result.duration_seconds < 20


async def test_files_past_the_size_limit_are_refused(local: LocalProvider, start: Start) -> None:
    sandbox_id = await start()
    limit = TEST_LIMITS.file_mb * 2**20
    result = await local.exec(sandbox_id, f"head -c {limit + 4096} /dev/zero > big.bin")
    assert result.exit_code != 0
    assert (local.root / sandbox_id / "workspace" / "big.bin").stat().st_size <= limit
    with pytest.raises(WorkspaceFull):
        await local.write_file(sandbox_id, "big2.bin", b"\0" * (limit + 1))


async def test_workspace_quota(local: LocalProvider, start: Start) -> None:
    sandbox_id = await start()
    chunk = 10 * 2**20  # under the per-file limit; the workspace holds 64 MiB
    fill = "; ".join(f"head -c {chunk} /dev/urandom > fill{i}.bin" for i in range(8))
    result = await local.exec(sandbox_id, fill, timeout=60)
    if local.store.hard_limit:
        assert "No space left on device" in result.stderr
    with pytest.raises(WorkspaceFull):
        await local.write_file(sandbox_id, "one-more.bin", os.urandom(chunk))
    await local.exec(sandbox_id, "rm -f fill*.bin")
    await local.write_file(sandbox_id, "one-more.bin", os.urandom(chunk))  # room again


# -- file API escapes --------------------------------------------------------------------------


async def test_symlinks_cannot_lead_the_file_api_out(local: LocalProvider, start: Start) -> None:
    sandbox_id = await start()
    setup = "ln -s /etc x; ln -s ../../../../../.. up; mkdir real; echo in > real/f; ln -s real in"
    assert (await local.exec(sandbox_id, setup)).exit_code == 0
    for path in ("x/passwd", "up/etc/passwd", "x"):
        with pytest.raises(PathOutsideWorkspace):
            await local.read_file(sandbox_id, path)
    with pytest.raises(PathOutsideWorkspace):
        await local.write_file(sandbox_id, "x/evil", b"owned")
    with pytest.raises(PathOutsideWorkspace):
        await local.list_files(sandbox_id, "up")
    assert await local.read_file(sandbox_id, "in/f") == b"in\n"  # links inside are fine
    await local.delete_file(sandbox_id, "x")  # removes the link, not /etc
    assert Path("/etc/passwd").exists()
    assert "x" not in {e.name for e in await local.list_files(sandbox_id)}


# -- stopping ----------------------------------------------------------------------------------


async def test_stop_leaves_no_process_behind(local: LocalProvider, start: Start) -> None:
    sandbox_id = await start("open")
    await local.start_session(sandbox_id, "web", "python3 -m http.server 8001")
    await local.exec(sandbox_id, "setsid nohup sleep 1000 >/dev/null 2>&1 & echo started")
    instance = local._instances[sandbox_id]
    pids = [instance.child_pid, instance.process.pid]
    assert instance.slirp is not None
    pids.append(instance.slirp.pid)
    await local.stop(sandbox_id)
    for pid in pids:
        assert not _alive(pid), pid
    if os.geteuid() == 0:
        uid = local.uids.lookup(sandbox_id)
        assert uid is not None
        assert processes_of(uid) == []


async def test_timeout_and_cancel_kill_background_children_too(
    local: LocalProvider, start: Start
) -> None:
    sandbox_id = await start()
    result = await local.exec(
        sandbox_id, "(sleep 1.5; echo late > late.txt) & sleep 100", timeout=1
    )
    assert result.timed_out
    task = asyncio.create_task(local.exec(sandbox_id, "sleep 600", timeout=None))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(1.5)
    ps = await local.exec(sandbox_id, "ps -eo args")
    assert "sleep 600" not in ps.stdout
    assert "sleep 100" not in ps.stdout
    assert not (local.root / sandbox_id / "workspace" / "late.txt").exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
