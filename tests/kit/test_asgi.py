"""send_error: an error in shoal's shape written straight to ASGI."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from shoal.kit.asgi import send_error


async def test_an_error_has_shoals_shape_and_the_extra_headers() -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await send_error(send, 413, "Too big.", "payload_too_large", headers=[(b"x-request-id", b"r1")])
    start, body = sent
    assert start["status"] == 413
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-request-id"] == b"r1"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert json.loads(body["body"]) == {"detail": "Too big.", "code": "payload_too_large"}
