"""The connect-time address guard."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from shoal.tools.net_guard import BlockedTarget, GuardedBackend, GuardedTransport, blocked_reason


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.0.0.8", True),
        ("172.16.3.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.251", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00:ec2::254", True),
        ("::ffff:10.0.0.1", True),
        ("::", True),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_blocked_reason(address: str, blocked: bool) -> None:
    assert (blocked_reason(ipaddress.ip_address(address)) is not None) is blocked


async def test_hostnames_are_checked_after_resolution() -> None:
    with pytest.raises(BlockedTarget, match="loopback"):
        await GuardedBackend().resolve("localhost", 80)
    assert await GuardedBackend(["127.0.0.1:80"]).resolve("127.0.0.1", 80) == "127.0.0.1"


async def test_transport_refuses_at_connect_time() -> None:
    async with httpx.AsyncClient(transport=GuardedTransport()) as client:
        with pytest.raises(BlockedTarget):
            await client.get("http://localhost:9/")
