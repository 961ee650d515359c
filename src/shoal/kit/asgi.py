"""Answers written straight to ASGI ``send`` by middleware (before any route runs)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def send_error(
    send: Send,
    status: int,
    detail: str,
    code: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """An error in shoal's shape (``{"detail", "code"}``, as the error handler writes it)."""
    body = json.dumps({"detail": detail, "code": code}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
