"""Rewriting a file through the provider keeps its permission bits (an edited script stays
executable), and never grants setuid/setgid."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.sandbox import SandboxSpec
from tests.sandbox.conftest import local_provider, require_bubblewrap

pytestmark = pytest.mark.services


async def test_rewriting_a_script_keeps_it_executable(sandbox_root: Path) -> None:
    await require_bubblewrap()
    provider = local_provider(sandbox_root)
    try:
        info = await provider.create(SandboxSpec())
        sid = info.sandbox_id
        await provider.write_file(sid, "run.sh", b"#!/bin/sh\necho one\n")
        await provider.start(sid)
        assert (await provider.exec(sid, "chmod 4755 run.sh && ./run.sh")).stdout == "one\n"
        await provider.write_file(sid, "run.sh", b"#!/bin/sh\necho two\n")
        result = await provider.exec(sid, "./run.sh; stat -c %a run.sh")
        assert result.stdout.split() == ["two", "755"]
        await provider.write_file(sid, "new.txt", b"x")
        assert (await provider.exec(sid, "stat -c %a new.txt")).stdout.strip() == "644"
    finally:
        await provider.aclose()
