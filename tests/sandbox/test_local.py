"""Local-provider behaviour beyond the conformance suite: refusals, settings, soft quotas."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shoal.config import Settings
from shoal.errors import BadRequest
from shoal.sandbox import (
    LocalProvider,
    SandboxSpec,
    SandboxUnavailable,
    UnsafeLocalProvider,
    WorkspaceFull,
    build_provider,
    local_limits,
)
from shoal.sandbox.bwrap import check_bubblewrap
from tests.sandbox.conftest import TEST_LIMITS, local_provider, require_bubblewrap


async def test_missing_bubblewrap_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="apt-get install -y bubblewrap slirp4netns"):
        await check_bubblewrap(None)


def test_settings_choose_the_provider_and_limits(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        sandbox_memory_mb=1024,
        sandbox_workspace_mb=512,
        sandbox_cpu_seconds=30,
    )
    provider = build_provider(settings)
    assert isinstance(provider, LocalProvider)
    assert provider.name == "local"
    assert provider.limits == local_limits(settings)
    assert (provider.limits.memory_mb, provider.limits.workspace_mb) == (1024, 512)
    assert provider.limits.address_space_mb >= 4096
    unsafe = build_provider(Settings(data_dir=tmp_path, sandbox_provider="unsafe-local"))
    assert isinstance(unsafe, UnsafeLocalProvider)
    assert unsafe.name == "unsafe-local"
    assert Settings().sandbox_workspace_mb == 2048


def test_address_space_below_4_gib_is_rejected() -> None:
    with pytest.raises(ValueError, match="4096"):
        Settings(sandbox_address_space_mb=1024)


@pytest.mark.services
async def test_directory_workspaces_have_a_soft_limit(sandbox_root: Path) -> None:
    await require_bubblewrap()
    provider = local_provider(sandbox_root, TEST_LIMITS, workspace_images=False)
    sandbox_id = (await provider.create(SandboxSpec())).sandbox_id
    try:
        await provider.start(sandbox_id)
        fill = "; ".join(f"head -c {10 * 2**20} /dev/urandom > f{i}.bin" for i in range(7))
        assert (await provider.exec(sandbox_id, fill, timeout=60)).exit_code == 0
        with pytest.raises(WorkspaceFull):
            await provider.write_file(sandbox_id, "more.bin", b"\1" * 2**20)
        await provider.delete_file(sandbox_id, "f0.bin")
        await provider.write_file(sandbox_id, "more.bin", b"\1" * 2**20)
    finally:
        await provider.delete(sandbox_id)


@pytest.mark.services
async def test_bad_cwd_and_files_api_while_stopped(sandbox_root: Path) -> None:
    await require_bubblewrap()
    provider = local_provider(sandbox_root)
    sandbox_id = (await provider.create(SandboxSpec())).sandbox_id
    try:
        await provider.write_file(sandbox_id, "before-start.txt", b"x")  # never started
        await provider.start(sandbox_id)
        assert (await provider.exec(sandbox_id, "cat before-start.txt")).stdout == "x"
        with pytest.raises(BadRequest):
            await provider.exec(sandbox_id, "true", cwd="/workspace/missing")
        again = await provider.create(SandboxSpec(), sandbox_id=sandbox_id)
        assert again.sandbox_id == sandbox_id  # idempotent
    finally:
        await provider.delete(sandbox_id)


@pytest.mark.services
async def test_common_runtimes_work_under_the_limits(sandbox_root: Path) -> None:
    await require_bubblewrap()
    runtimes = {
        "node": "node -e 'console.log(21 * 2)'",
        "java": "java -Xshare:off -version 2>&1 | head -1",
        "python3": "python3 -c 'print(21 * 2)'",
    }
    present = {name: cmd for name, cmd in runtimes.items() if shutil.which(name)}
    provider = local_provider(sandbox_root)  # RLIMIT_AS at the 4 GiB floor
    assert provider.limits.address_space_mb == 4096
    sandbox_id = (await provider.create(SandboxSpec())).sandbox_id
    try:
        await provider.start(sandbox_id)
        for name, command in present.items():
            result = await provider.exec(sandbox_id, command, timeout=60)
            assert result.exit_code == 0, (name, result)
        big = await provider.exec(sandbox_id, "head -c 3000000 /dev/zero | base64 -w 100")
        assert len(big.stdout) == 4_000_000 + 40_000
    finally:
        await provider.delete(sandbox_id)
