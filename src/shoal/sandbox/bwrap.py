"""The bubblewrap command line of a local sandbox, and the check that bubblewrap can run here.

The sandbox sees: the host's ``/usr`` (and the ``/bin``, ``/lib*`` links into it) read-only; an
allow-list of harmless ``/etc`` entries read-only plus generated ``passwd``, ``group``, ``hosts``,
``hostname`` and ``resolv.conf``; fresh ``/proc``, ``/dev`` and ``/tmp``; ``/workspace``
read-write — nothing else of the host (no home directories, no ``/root``, ``/srv``, ``/tmp``,
no data directory, no ``/etc/shadow``). All namespaces are private (user, pid, ipc, uts,
cgroup, mount, net); nested user namespaces are disabled, all capabilities are dropped, the
command runs in a new session, and the whole sandbox dies with the process that started it.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field

from shoal.sandbox.base import WORKSPACE, Network, SandboxUnavailable
from shoal.sandbox.uids import SETPRIV, as_user

INSIDE_UID = 1000
AGENT_PATH = "/opt/shoal/agent.py"
INSIDE_PYTHON = "/usr/bin/python3"
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ALLOW = (
    "alternatives", "ssl", "ca-certificates", "ca-certificates.conf", "ld.so.cache",
    "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf", "mime.types",
    "protocols", "services", "rpc", "gai.conf", "host.conf", "bash.bashrc", "profile",
    "profile.d", "inputrc", "os-release", "debian_version", "lsb-release", "magic",
    "magic.mime", "terminfo", "fonts", "locale.alias", "python3*", "java*", "perl",
)  # fmt: skip
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_HINT = "apt-get install -y bubblewrap slirp4netns"
USERNS_HINT = (
    "unprivileged user namespaces look disabled: run `sysctl -w kernel.unprivileged_userns_clone=1`"
    " (Debian/Ubuntu), `sysctl -w user.max_user_namespaces=15000`, and on Ubuntu 24.04+ "
    "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
)


def etc_files(network: Network) -> dict[str, bytes]:
    """Generated ``/etc`` files: a sandbox user, and DNS only where there is a network."""
    resolv = "nameserver 10.0.2.3\n" if network == "open" else ""
    return {
        "/etc/passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"user:x:{INSIDE_UID}:{INSIDE_UID}:sandbox:{WORKSPACE}:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ).encode(),
        "/etc/group": f"root:x:0:\nuser:x:{INSIDE_UID}:\nnogroup:x:65534:\n".encode(),
        "/etc/hosts": b"127.0.0.1 localhost sandbox\n::1 localhost ip6-localhost ip6-loopback\n",
        "/etc/hostname": b"sandbox\n",
        "/etc/resolv.conf": resolv.encode(),
    }


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        "PATH": PATH,
        "HOME": WORKSPACE,
        "USER": "user",
        "LOGNAME": "user",
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "TMPDIR": "/tmp",  # noqa: S108 - the sandbox's own tmpfs
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


@dataclass(slots=True)
class BwrapCommand:
    """Everything one ``bwrap`` invocation needs; :meth:`argv` renders it."""

    workspace: str
    network: Network
    env: Mapping[str, str]
    agent_args: list[str]
    data_fds: dict[str, int] = field(default_factory=dict)  # sandbox path -> readable fd
    info_fd: int = -1
    sync_fd: int = -1
    tmp_size: int | None = None

    def argv(self, features: frozenset[str]) -> list[str]:
        args = ["bwrap", "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]
        if "--disable-userns" in features:
            args.append("--disable-userns")
        args += ["--uid", str(INSIDE_UID), "--gid", str(INSIDE_UID), "--hostname", "sandbox"]
        args += ["--info-fd", str(self.info_fd), "--sync-fd", str(self.sync_fd)]
        args += _system_mounts()
        args += ["--proc", "/proc", "--dev", "/dev"]
        if self.tmp_size and "--size" in features:
            args += ["--size", str(self.tmp_size)]
        tmp = "/tmp"  # noqa: S108 - the sandbox's own tmpfs
        args += ["--tmpfs", tmp, "--dir", "/run", "--bind", self.workspace, WORKSPACE]
        for dest, fd in sorted(self.data_fds.items()):
            if "--perms" in features:
                args += ["--perms", "0555" if dest == AGENT_PATH else "0644"]
            args += ["--ro-bind-data", str(fd), dest]
        args += ["--remount-ro", "/", "--chdir", WORKSPACE, "--clearenv"]
        for key, value in base_env(self.env).items():
            args += ["--setenv", key, value]
        return [*args, INSIDE_PYTHON, "-I", "-S", AGENT_PATH, *self.agent_args]


def _system_mounts() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for pattern in ETC_ALLOW:
        for path in sorted(glob.glob(f"/etc/{pattern}")):
            args += ["--ro-bind", path, path]
    return args


@functools.cache
def bwrap_features() -> frozenset[str]:
    """Which optional flags this bubblewrap knows (older releases lack some)."""
    import subprocess

    try:
        text = subprocess.run(
            ["bwrap", "--help"],  # noqa: S607 - found on PATH like every tool here
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    known = ("--disable-userns", "--size", "--perms", "--clearenv", "--info-fd", "--sync-fd")
    return frozenset(flag for flag in known if flag in text)


async def check_bubblewrap(user: int | None) -> None:
    """Refuse with the fix when bubblewrap cannot run sandboxes here."""
    missing = [tool for tool in ("bwrap",) if not shutil.which(tool)]
    if missing:
        raise SandboxUnavailable(f"bubblewrap is not installed: run `{INSTALL_HINT}`.")
    if not await asyncio.to_thread(os.path.exists, INSIDE_PYTHON):
        raise SandboxUnavailable(f"{INSIDE_PYTHON} is missing: the sandbox agent needs it.")
    features = await asyncio.to_thread(bwrap_features)
    if not {"--info-fd", "--sync-fd", "--clearenv"} <= features:
        raise SandboxUnavailable("bubblewrap is too old (need ≥ 0.5): upgrade it.")
    argv = ["bwrap", "--unshare-all", "--unshare-user", *_system_mounts(), "/usr/bin/true"]
    if user is not None and not await asyncio.to_thread(os.path.exists, SETPRIV):
        raise SandboxUnavailable(f"{SETPRIV} is missing: run `apt-get install -y util-linux`.")
    proc = await asyncio.create_subprocess_exec(
        *as_user(argv, user),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip()
        raise SandboxUnavailable(f"bubblewrap cannot create a sandbox ({detail}); {USERNS_HINT}.")
