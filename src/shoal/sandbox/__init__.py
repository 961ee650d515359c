"""Sandbox providers (DESIGN.md §6): the protocol, the local bubblewrap provider, the unsafe
local one and a scripted fake for tests. Providers only — no tenants, no database.

``build_provider(settings)`` picks the provider ``SHOAL_SANDBOX_PROVIDER`` names.
"""

from __future__ import annotations

from shoal.config import Settings
from shoal.sandbox.base import (
    WORKSPACE,
    ExecResult,
    FileEntry,
    OutputCallback,
    PortConnection,
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

__all__ = [
    "WORKSPACE",
    "ExecResult",
    "FileEntry",
    "LocalLimits",
    "LocalProvider",
    "OutputCallback",
    "PortConnection",
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
    raise SandboxUnavailable(
        "SHOAL_SANDBOX_PROVIDER=daytona: the Daytona provider is not part of this build yet."
    )
