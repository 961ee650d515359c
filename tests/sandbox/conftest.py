"""Sandbox providers under test: the local bubblewrap one, unsafe-local, the scripted fake and
Daytona (the real SDK against :class:`~shoal.sandbox.daytona_fake.FakeDaytona`, whose sandboxes
are scripted fakes with the same scripts).

Local sandboxes live in a fresh directory under /var/tmp: bubblewrap runs as each sandbox's own
uid and must be able to reach the workspace by path (pytest's tmp_path is private to root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shoal.errors import ShoalError
from shoal.sandbox import (
    LocalLimits,
    LocalProvider,
    SandboxProvider,
    SandboxSpec,
    SandboxUnavailable,
    ScriptedSandbox,
    UnsafeLocalProvider,
)
from shoal.sandbox.bwrap import check_bubblewrap
from shoal.sandbox.fake import ScriptContext
from tests.conftest import service_unavailable

if TYPE_CHECKING:
    from shoal.sandbox.daytona import DaytonaProvider
    from shoal.sandbox.daytona_fake import FakeDaytona

TEST_LIMITS = LocalLimits(
    cpu_seconds=60,
    cpus=1.0,
    memory_mb=512,
    pids=128,
    workspace_mb=64,
    file_mb=16,
    address_space_mb=4096,
)

Factory = Callable[..., Coroutine[Any, Any, str]]


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    yield from temporary_sandbox_root()


def temporary_sandbox_root(prefix: str = "shoal-sbx-") -> Iterator[Path]:
    """A fresh provider root under /var/tmp (sandbox uids must traverse it), removed with
    every workspace image still mounted under it (a test that only stopped its sandboxes
    would otherwise leak a mount and a loop device each)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(root, 0o711)
    try:
        yield root
    finally:
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def unmount_under(root: Path) -> None:
    prefix = f"{root}/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


async def require_bubblewrap() -> None:
    try:
        await check_bubblewrap(None)
    except SandboxUnavailable as exc:
        service_unavailable(f"bubblewrap: {exc.message}")


def local_provider(root: Path, limits: LocalLimits = TEST_LIMITS, **kwargs: Any) -> LocalProvider:
    return LocalProvider(root, limits=limits, uid_base=_uid_base(), **kwargs)


def _uid_base() -> int:
    """A uid range per test process, so parallel test runs never share a sandbox uid."""
    return 300_000 + (os.getpid() % 500) * 100


async def _http_server(ctx: ScriptContext) -> int:
    """The fake's `python3 -m http.server PORT`: a listing page on that port until killed."""
    port = int(ctx.command.split()[-1])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"<title>Directory listing for /</title>"
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    ctx.listen(port, handle)
    await ctx.emit("stdout", f"Serving HTTP on 0.0.0.0 port {port}\n")
    await asyncio.Event().wait()
    return 0


async def _curl(ctx: ScriptContext) -> int:
    port = int(ctx.command.rsplit(":", 1)[1].split("/")[0])
    try:
        conn = await ctx.sandbox.open_port(ctx.sandbox_id, port)
    except ShoalError:
        return 7
    conn.writer.write(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
    await conn.writer.drain()
    response = await conn.reader.read()
    await conn.aclose()
    await ctx.emit("stdout", response.split(b"\r\n\r\n", 1)[1].decode())
    return 0


def daytona_provider(fake: FakeDaytona, **options: Any) -> DaytonaProvider:
    from shoal.sandbox.daytona import DaytonaOptions, DaytonaProvider  # slow to import

    return DaytonaProvider(
        DaytonaOptions(api_key=fake.api_key, api_url=fake.api_url, timeout_seconds=20, **options)
    )


def scripted_sandbox() -> ScriptedSandbox:
    fake = ScriptedSandbox()
    fake.on(re.compile(r"python3 -m http\.server \d+"), _http_server)
    fake.on(re.compile(r"curl -s localhost:\d+/?"), _curl)
    return fake


@pytest.fixture(
    params=[
        pytest.param("local", marks=pytest.mark.services),
        pytest.param("unsafe-local", marks=pytest.mark.services),
        "fake",
        "daytona",
    ]
)
async def provider(
    request: pytest.FixtureRequest, sandbox_root: Path
) -> AsyncIterator[SandboxProvider]:
    kind = str(request.param)
    made: SandboxProvider
    if kind == "fake":
        made = scripted_sandbox()
    elif kind == "daytona":
        from shoal.sandbox.daytona_fake import FakeDaytona

        async with FakeDaytona(scripted_sandbox()) as fake:
            made = daytona_provider(fake)
            yield made
            await made.aclose()
        return
    else:
        await require_bubblewrap()
        cls = LocalProvider if kind == "local" else UnsafeLocalProvider
        made = cls(sandbox_root, limits=TEST_LIMITS, uid_base=_uid_base())
    yield made
    await made.aclose()


@pytest.fixture
async def make_sandbox(provider: SandboxProvider) -> AsyncIterator[Factory]:
    """``await make_sandbox(network="none")`` → the id of a created and started sandbox."""
    made: list[str] = []

    async def factory(network: str = "none", **spec: Any) -> str:
        info = await provider.create(SandboxSpec(network=network, **spec))  # type: ignore[arg-type]
        made.append(info.sandbox_id)
        await provider.start(info.sandbox_id)
        return info.sandbox_id

    yield factory
    for sandbox_id in made:
        with contextlib.suppress(ShoalError):
            await provider.delete(sandbox_id)
