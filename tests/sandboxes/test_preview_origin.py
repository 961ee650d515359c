"""SHOAL_PREVIEW_URL: the setting's checks and which host the middleware takes for the preview
origin (the relay itself on that origin is shown end to end in tests/runs/test_sandbox_runs.py)."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.config import load_settings
from shoal.errors import ConfigError
from shoal.sandboxes.preview_origin import PreviewOriginMiddleware


def test_the_preview_origin_must_be_another_origin_and_a_url() -> None:
    for same_host in ("https://shoal.example/", "https://shoal.example:8443"):
        with pytest.raises(ConfigError) as same:
            load_settings(public_url="https://shoal.example", preview_url=same_host)
        assert "SHOAL_PREVIEW_URL must be on another host" in str(same.value)
    with pytest.raises(ConfigError) as bad:
        load_settings(preview_url="preview.example")
    assert "SHOAL_PREVIEW_URL" in str(bad.value)
    settings = load_settings(public_url="https://shoal.example", preview_url="https://p.example/")
    assert settings.relay_url == "https://p.example"
    assert load_settings(public_url="https://shoal.example/").relay_url == "https://shoal.example"


@pytest.mark.parametrize(
    ("preview_url", "host", "expected"),
    [
        ("https://p.example", "p.example", True),
        ("https://p.example", "P.Example:443", True),
        ("https://p.example", "p.example:8443", False),
        ("https://p.example", "shoal.example", False),
        ("http://p.example:8001", "p.example:8001", True),
        ("http://p.example:8001", "p.example", False),
        ("https://p.example", "[::1]", False),
        ("https://p.example", "p.example:not-a-port", False),
        ("https://p.example", "", False),
    ],
)
def test_which_requests_are_for_the_preview_origin(
    preview_url: str, host: str, expected: bool
) -> None:
    middleware = PreviewOriginMiddleware(_nothing, preview_url=preview_url)
    scope = {"type": "http", "headers": [(b"host", host.encode())] if host else []}
    assert middleware._is_preview(scope) is expected


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not reached")
