"""The SSE wire format of DESIGN.md §3: encoding for the server, parsing for tests and clients.

An event is ``id: …\\nevent: …\\ndata: <compact JSON on one line>\\n\\n``; ``: ping`` comments
keep idle connections alive. The parser follows the WHATWG event-stream rules (CR, LF or CRLF
line ends, ``data`` lines joined by ``\\n``, comments ignored, a leading BOM skipped).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any, NamedTuple
from uuid import UUID

PING = ": ping\n\n"

# JSON leaves these unescaped with ensure_ascii=False; some line splitters (str.splitlines,
# JavaScript before ES2019) treat them as line breaks, so they are escaped too.
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}
_LINE_END = re.compile(r"\r\n|\r|\n")


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: object) -> str:
    """Compact JSON on one line (datetimes as ISO 8601, UUIDs as strings); never a raw newline."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_default)
    for raw, escaped in _LINE_BREAKS.items():
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def encode_event(event_id: str, event_type: str, data: Mapping[str, Any]) -> str:
    """One SSE event: ``id``, ``event`` and ``data`` (JSON of ``data``) lines and a blank line."""
    for name, value in (("event_id", event_id), ("event_type", event_type)):
        if _LINE_END.search(value):
            raise ValueError(f"SSE {name} must not contain a line break: {value!r}")
    return f"id: {event_id}\nevent: {event_type}\ndata: {dumps(data)}\n\n"


class SSEEvent(NamedTuple):
    """A parsed event. ``data`` is the decoded JSON value (the raw text when it is not JSON);
    ``id`` is the event's own ``id`` field, ``None`` when it had none."""

    id: str | None
    event: str
    data: Any


class SSEParser:
    """Incremental event-stream parser: ``feed`` it bytes (or text) as they arrive.

    ``last_event_id`` is the id a reconnecting client sends as ``Last-Event-ID``; ``comments``
    collects comment lines (e.g. ``"ping"``) so tests can see keep-alives.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self.last_event_id = ""
        self.comments: list[str] = []

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        """Events completed by ``chunk``."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        self._buffer += text
        if not self._started and self._buffer:
            self._started = True
            self._buffer = self._buffer.removeprefix("\ufeff")
        events: list[SSEEvent] = []
        while True:
            match = _LINE_END.search(self._buffer)
            # A trailing CR may be the first half of CRLF: wait for the next chunk.
            if match is None or (match.group() == "\r" and match.end() == len(self._buffer)):
                break
            line = self._buffer[: match.start()]
            self._buffer = self._buffer[match.end() :]
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """Flush at end of stream. Per the spec, an event without its blank line is discarded."""
        rest = self._decoder.decode(b"", final=True)
        self._buffer += rest
        events: list[SSEEvent] = []
        if self._buffer.endswith("\r"):
            self._buffer += "\n"
            events = self.feed("")
        self._buffer = ""
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
            self.last_event_id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event_type, event_id = self._data, self._event or "message", self._id
        self._data, self._event, self._id = [], "", None
        if not data:
            return None
        text = "\n".join(data)
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        return SSEEvent(event_id, event_type, value)


def parse_sse(text: str | bytes) -> list[SSEEvent]:
    """Every complete event in ``text`` (a whole response body)."""
    parser = SSEParser()
    return [*parser.feed(text), *parser.close()]


async def aiter_sse(chunks: AsyncIterable[bytes | str]) -> AsyncIterator[SSEEvent]:
    """Events from a byte stream, e.g. ``aiter_sse(response.aiter_bytes())`` with httpx."""
    parser = SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event
