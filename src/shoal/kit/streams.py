"""Thread-stream event ids: opaque to clients, ``<run_id>.<seq>`` inside."""

from __future__ import annotations

import uuid


def thread_event_id(run_id: uuid.UUID | str, seq: int) -> str:
    return f"{run_id}.{seq}"


def parse_thread_event_id(value: str) -> tuple[uuid.UUID, int] | None:
    run_part, _, seq_part = value.partition(".")
    try:
        seq = int(seq_part)
        return (uuid.UUID(run_part), seq) if seq >= 0 else None
    except ValueError:
        return None
