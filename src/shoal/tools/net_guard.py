"""Outbound HTTP that cannot reach private networks (SSRF guard for ``scrape_webpage``).

The check happens at connect time, on the addresses the connection will actually use: the
host is resolved once, every resolved address must be public, and the socket connects to that
checked address (so DNS cannot change its answer in between). TLS still verifies the original
host name. Redirects are followed by the caller one hop at a time, each hop connecting
through the same guard.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(net)
    for net in ("0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "fd00:ec2::/32")
)


class BlockedTarget(Exception):
    """The destination is not a public internet address."""


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be contacted, or ``None`` when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return blocked_reason(ip.ipv4_mapped)
    checks = (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (incl. cloud metadata)"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (any(ip in net for net in _EXTRA_BLOCKED), "non-public"),
        (not ip.is_global, "non-public"),
    )
    for flagged, reason in checks:
        if flagged:
            return reason
    return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that only connects to public addresses.

    ``allowed_targets`` (``"ip:port"`` strings) is an explicit allow-list for tests, e.g. a
    local server on 127.0.0.1; it is empty in production.
    """

    def __init__(self, allowed_targets: Iterable[str] = ()) -> None:
        self.allowed_targets = frozenset(allowed_targets)
        self._inner = httpcore.AnyIOBackend()

    async def resolve(self, host: str, port: int) -> str:
        """The checked address to connect to; raises :class:`BlockedTarget`."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise httpx.ConnectError(f"cannot resolve {host}")
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            reason = blocked_reason(ip)
            if reason and f"{ip}:{port}" not in self.allowed_targets:
                raise BlockedTarget(f"refusing to connect to {host} ({ip}): {reason} address")
        return addresses[0]

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await self.resolve(host, port)
        return await self._inner.connect_tcp(
            address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedTarget("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """``httpx`` transport whose connections go through :class:`GuardedBackend`."""

    def __init__(self, allowed_targets: Iterable[str] = ()) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=10,
            max_keepalive_connections=0,
            network_backend=GuardedBackend(allowed_targets),
        )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def check_url(url: httpx.URL, allowed_targets: Iterable[str] = ()) -> None:
    """Cheap pre-check of a URL: http(s) only, and no blocked literal IP address."""
    if url.scheme not in ("http", "https"):
        raise BlockedTarget(f"only http and https URLs can be fetched, not {url.scheme!r}")
    if not url.host:
        raise BlockedTarget("the URL has no host")
    try:
        ip = ipaddress.ip_address(url.host)
    except ValueError:
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    reason = blocked_reason(ip)
    if reason and f"{ip}:{port}" not in set(allowed_targets):
        raise BlockedTarget(f"refusing to connect to {ip}: {reason} address")
