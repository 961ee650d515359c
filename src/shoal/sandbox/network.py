"""Network ``open``: a user-mode TCP/IP stack (slirp4netns) for a sandbox's private netns.

The sandbox never shares the host's network namespace. slirp4netns attaches a ``tap0`` device
(10.0.2.100/24, gateway 10.0.2.2, DNS forwarder 10.0.2.3) and turns the sandbox's packets into
ordinary sockets of its own process on the host:

- ``--disable-host-loopback`` refuses 10.0.2.2 → host 127.0.0.1 (Postgres, Redis, shoal itself);
- ``prohibit`` routes inside the sandbox's netns, installed by us before any command runs,
  make every private, shared, link-local (cloud metadata 169.254.169.254), benchmark, multicast
  and reserved IPv4 range fail at ``connect()`` with "permission denied"; only the slirp subnet
  itself (DNS) stays routable. The sandbox user has no capabilities (and cannot create user
  namespaces), so it cannot change these routes. IPv6 is not offered at all.

slirp4netns runs with ``--enable-sandbox --enable-seccomp`` and exits when the sandbox does
(``--exit-fd`` on the sandbox's ``--sync-fd`` pipe). It runs as the sandbox's uid when that uid
may open ``/dev/net/tun``; otherwise as root (capabilities dropped by its own sandbox), which is
what opening the device needs.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import stat

from shoal.sandbox.base import SandboxError, SandboxUnavailable
from shoal.sandbox.pipes import read_pipe

BLOCKED_V4 = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)  # fmt: skip
SLIRP_HINT = "apt-get install -y slirp4netns"
_NS_GET_USERNS = 0xB701  # ioctl_ns(2)


def tun_usable_by_others() -> bool:
    try:
        return bool(os.stat("/dev/net/tun").st_mode & stat.S_IWOTH)
    except OSError:
        return False


def check_network_tools() -> None:
    for tool, package in (("slirp4netns", "slirp4netns"), ("nsenter", "util-linux")):
        if not shutil.which(tool):
            raise SandboxUnavailable(
                f"network 'open' needs {tool}: run `apt-get install -y {package}`."
            )
    if not shutil.which("ip"):
        raise SandboxUnavailable("network 'open' needs ip: run `apt-get install -y iproute2`.")


async def attach(child_pid: int, *, exit_fd: int, uid: int | None) -> asyncio.subprocess.Process:
    """Start slirp4netns for the sandbox whose pid-1 is ``child_pid``, then block private
    ranges; returns the slirp4netns process (it exits when ``exit_fd`` reaches EOF)."""
    check_network_tools()
    userns_fd = _owning_userns(child_pid)
    try:
        proc = await _slirp(child_pid, userns_fd, exit_fd, uid)
        await _block_private_ranges(child_pid, userns_fd)
    finally:
        os.close(userns_fd)
    return proc


def _owning_userns(child_pid: int) -> int:
    """An fd of the user namespace that owns the sandbox's netns. (bubblewrap's
    ``--disable-userns`` leaves the sandbox itself in a nested one, without rights there.)"""
    net_fd = os.open(f"/proc/{child_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return int(fcntl.ioctl(net_fd, _NS_GET_USERNS))
    finally:
        os.close(net_fd)


async def _slirp(
    child_pid: int, userns_fd: int, exit_fd: int, uid: int | None
) -> asyncio.subprocess.Process:
    ready_r, ready_w = os.pipe()
    run_as = uid if uid is not None and os.geteuid() == 0 and tun_usable_by_others() else None
    try:
        proc = await asyncio.create_subprocess_exec(
            "slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
            "--enable-sandbox", "--enable-seccomp", f"--userns-path=/proc/self/fd/{userns_fd}",
            f"--ready-fd={ready_w}", f"--exit-fd={exit_fd}", str(child_pid), "tap0",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, pass_fds=(ready_w, exit_fd, userns_fd),
            user=run_as, group=run_as, extra_groups=None if run_as is None else [],
        )  # fmt: skip
    except BaseException:
        os.close(ready_r)
        raise
    finally:
        os.close(ready_w)
    ready = await read_pipe(ready_r, complete=bool, seconds=10)
    if ready != b"1":
        if proc.returncode is None:
            proc.kill()
        _, err = await proc.communicate()
        detail = (err or b"").decode(errors="replace").strip()
        if "/dev/net/tun" in detail:
            detail += " (shoal's user must be able to open /dev/net/tun: `chmod 0666 /dev/net/tun`)"
        raise SandboxError(f"slirp4netns failed to attach the network: {detail}")
    return proc


async def _block_private_ranges(child_pid: int, userns_fd: int) -> None:
    script = "".join(f"route add prohibit {net}\n" for net in BLOCKED_V4)
    # Root may enter the netns directly; anyone else through the user namespace owning it.
    userns = [] if os.geteuid() == 0 else [f"--user=/proc/self/fd/{userns_fd}"]
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/proc/{child_pid}/ns/net", *userns, "--preserve-credentials",
        "ip", "-batch", "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, pass_fds=(userns_fd,),
    )  # fmt: skip
    _, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise SandboxError(f"could not block private ranges: {err.decode(errors='replace')}")
