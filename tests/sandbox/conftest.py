"""Sandbox providers under test: the local bubblewrap one, unsafe-local and the scripted fake.

Local sandboxes live in a fresh directory under /var/tmp: bubblewrap runs as each sandbox's own
uid and must be able to reach the workspace by path (pytest's tmp_path is private to root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

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
    root = Path(tempfile.mkdtemp(prefix="shoal-sbx-", dir="/var/tmp"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


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
    ]
)
async def provider(
    request: pytest.FixtureRequest, sandbox_root: Path
) -> AsyncIterator[SandboxProvider]:
    kind = str(request.param)
    made: SandboxProvider
    if kind == "fake":
        made = scripted_sandbox()
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
