"""Identifiers: UUID4 everywhere; a malformed id is simply "not found"."""

from __future__ import annotations

import uuid


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def parse_id(value: str | uuid.UUID) -> uuid.UUID | None:
    """Parse a UUID from a path or body; ``None`` when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
