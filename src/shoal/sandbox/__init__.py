"""Sandbox providers (DESIGN.md §6): the protocol, the local bubblewrap provider, the unsafe
local one, Daytona and a scripted fake for tests. Providers only — no tenants, no database.

``build_provider(settings)`` picks the provider ``SHOAL_SANDBOX_PROVIDER`` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.config import Settings
from shoal.sandbox.base import (
    WORKSPACE,
    ExecResult,
    FileEntry,
    OutputCallback,
    PortConnection,
    PreviewLink,
    SandboxError,
    SandboxInfo,
    SandboxNotFound,
    SandboxNotRunning,
    SandboxProvider,
    SandboxSpec,
    SandboxState,
    SandboxUnavailable,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    SessionOutput,
    WorkspaceFull,
)
from shoal.sandbox.fake import ScriptedSandbox
from shoal.sandbox.launch import LocalLimits
from shoal.sandbox.local import LocalProvider, UnsafeLocalProvider

if TYPE_CHECKING:
    from shoal.sandbox.daytona import DaytonaOptions

__all__ = [
    "WORKSPACE",
    "ExecResult",
    "FileEntry",
    "LocalLimits",
    "LocalProvider",
    "OutputCallback",
    "PortConnection",
    "PreviewLink",
    "SandboxError",
    "SandboxInfo",
    "SandboxNotFound",
    "SandboxNotRunning",
    "SandboxProvider",
    "SandboxSpec",
    "SandboxState",
    "SandboxUnavailable",
    "ScriptedSandbox",
    "SessionExists",
    "SessionInfo",
    "SessionNotFound",
    "SessionOutput",
    "UnsafeLocalProvider",
    "WorkspaceFull",
    "build_provider",
    "daytona_options",
    "local_limits",
]


def local_limits(settings: Settings) -> LocalLimits:
    return LocalLimits(
        cpu_seconds=settings.sandbox_cpu_seconds,
        cpus=settings.sandbox_cpus,
        memory_mb=settings.sandbox_memory_mb,
        pids=settings.sandbox_pids,
        workspace_mb=settings.sandbox_workspace_mb,
        file_mb=settings.sandbox_file_mb,
        address_space_mb=settings.sandbox_address_space_mb,
    )


def build_provider(settings: Settings) -> SandboxProvider:
    """The configured provider. Nothing is started until a sandbox is."""
    if settings.sandbox_provider in ("local", "unsafe-local"):
        cls = LocalProvider if settings.sandbox_provider == "local" else UnsafeLocalProvider
        return cls(
            settings.data_dir,
            limits=local_limits(settings),
            uid_base=settings.sandbox_uid_base,
            uid_count=settings.sandbox_uid_count,
        )
    from shoal.sandbox.daytona import DaytonaProvider  # the SDK takes seconds to import

    return DaytonaProvider(daytona_options(settings))


def daytona_options(settings: Settings) -> DaytonaOptions:
    from shoal.sandbox.daytona import DaytonaOptions

    return DaytonaOptions(
        api_key=settings.daytona_api_key,
        api_url=settings.daytona_api_url,
        target=settings.daytona_target,
        snapshot=settings.daytona_snapshot,
        image=settings.sandbox_image,
        auto_stop_minutes=settings.sandbox_auto_stop_minutes,
    )
