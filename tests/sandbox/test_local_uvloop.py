"""The local provider under uvloop — the event loop uvicorn runs ``shoal serve`` on — which
lacks subprocess's ``user=``/``group=`` (sandboxes drop to their uid through setpriv)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import uvloop

from shoal.sandbox import SandboxSpec
from tests.sandbox.conftest import local_provider, require_bubblewrap

pytestmark = pytest.mark.services


def test_sandboxes_start_and_run_commands_on_uvloop(sandbox_root: Path) -> None:
    async def scenario() -> tuple[str, str]:
        await require_bubblewrap()
        provider = local_provider(sandbox_root)
        try:
            info = await provider.create(SandboxSpec())
            await provider.start(info.sandbox_id)
            result = await provider.exec(info.sandbox_id, "echo ok; id -u")
            await provider.stop(info.sandbox_id)
            loop = type(asyncio.get_running_loop()).__module__
            return result.stdout, loop
        finally:
            await provider.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        stdout, loop = runner.run(scenario())
    assert loop.startswith("uvloop")
    first, uid = stdout.split()
    assert first == "ok"
    assert uid != "0"
