"""Opaque cursors for keyset pagination.

A cursor is url-safe base64 of a small JSON array; clients treat it as opaque. Decoding
anything that we did not produce raises :class:`~shoal.errors.InvalidCursor`.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from shoal.errors import InvalidCursor
from shoal.kit.time import as_utc

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _encode(payload: list[object]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> list[object]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise InvalidCursor(
            "The cursor is not valid; pass next_cursor from a previous page."
        ) from exc
    if not isinstance(value, list):
        raise InvalidCursor("The cursor is not valid; pass next_cursor from a previous page.")
    return value


@dataclass(frozen=True, slots=True)
class TimeCursor:
    """Position after ``(created_at, id)`` in a newest-first list."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        return _encode(["t", as_utc(self.created_at).isoformat(), str(self.id)])

    @classmethod
    def decode(cls, cursor: str) -> TimeCursor:
        value = _decode(cursor)
        try:
            kind, created_at, ident = value
            if kind != "t" or not isinstance(created_at, str) or not isinstance(ident, str):
                raise ValueError(kind)
            return cls(as_utc(datetime.fromisoformat(created_at)), uuid.UUID(ident))
        except (ValueError, TypeError) as exc:
            raise InvalidCursor(
                "The cursor is not valid; pass next_cursor from a previous page."
            ) from exc


@dataclass(frozen=True, slots=True)
class SeqCursor:
    """Position after ``seq`` in an oldest-first list (messages)."""

    seq: int

    def encode(self) -> str:
        return _encode(["s", self.seq])

    @classmethod
    def decode(cls, cursor: str) -> SeqCursor:
        value = _decode(cursor)
        if len(value) != 2 or value[0] != "s" or type(value[1]) is not int or value[1] < 0:
            raise InvalidCursor("The cursor is not valid; pass next_cursor from a previous page.")
        return cls(value[1])
