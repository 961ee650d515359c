"""The SSE wire format (DESIGN.md §3) and the parsers clients and tests use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from shoal.streaming.sse import PING, SSEEvent, SSEParser, aiter_sse, encode_event, parse_sse

EVENT = {
    "seq": 42,
    "type": "text_delta",
    "run_id": "r1",
    "data": {"message_id": "m1", "text": "Hel"},
}


def test_event_is_id_event_and_one_compact_data_line() -> None:
    assert encode_event("42", "text_delta", EVENT) == (
        "id: 42\n"
        "event: text_delta\n"
        'data: {"seq":42,"type":"text_delta","run_id":"r1",'
        '"data":{"message_id":"m1","text":"Hel"}}\n\n'
    )
    assert PING == ": ping\n\n"


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\r\nb", "x\u2028y\u2029z", "nel\x85", "\x00\t"])
def test_no_raw_line_break_can_reach_the_data_line(text: str) -> None:
    wire = encode_event("1", "text_delta", {"seq": 1, "data": {"text": text}})
    data_line = wire.split("\n")[2]
    assert data_line.startswith("data: ")
    assert data_line.splitlines() == [data_line]  # Python's splitlines is the widest definition
    assert wire.count("\n") == 4 and "\r" not in wire
    assert json.loads(data_line.removeprefix("data: "))["data"]["text"] == text


def test_non_ascii_stays_readable_and_datetimes_encode() -> None:
    when = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    wire = encode_event("7", "message", {"text": "héllo 🐟", "created_at": when})
    assert "héllo 🐟" in wire
    assert parse_sse(wire)[0].data == {
        "text": "héllo 🐟",
        "created_at": "2026-11-26T12:00:00+00:00",
    }


@pytest.mark.parametrize(("event_id", "event_type"), [("4\n2", "x"), ("1", "text\rdelta")])
def test_line_breaks_in_id_or_type_are_refused(event_id: str, event_type: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_event(event_id, event_type, {})


def test_parse_round_trips_a_response_body_with_pings() -> None:
    body = PING + encode_event("1", "run_status", {"status": "queued"}) + PING
    body += encode_event("2", "text_delta", {"text": "a\nb"})
    assert parse_sse(body) == [
        SSEEvent("1", "run_status", {"status": "queued"}),
        SSEEvent("2", "text_delta", {"text": "a\nb"}),
    ]
    (event_id, event_type, data), _ = parse_sse(body)  # plain (id, event, data) tuples
    assert (event_id, event_type, data) == ("1", "run_status", {"status": "queued"})


def test_parser_follows_the_event_stream_rules() -> None:
    text = (
        "\ufeffdata: first\r\n"
        "data:second\r\n\r\n"  # no space after the colon, CRLF line ends
        'event: custom\rid: 9\rdata: {"a": 1}\r\r'  # CR line ends
        "retry: 1000\nunknown: x\n\n"  # nothing to dispatch: no data
        "id: 10\ndata: no blank line at the end"
    )
    parser = SSEParser()
    events = [*parser.feed(text), *parser.close()]
    assert events == [
        SSEEvent(None, "message", "first\nsecond"),
        SSEEvent("9", "custom", {"a": 1}),
    ]
    assert parser.last_event_id == "10"


def test_incremental_parser_handles_any_chunking() -> None:
    body = (PING + encode_event("1", "a", {"t": "é🐟"}) + encode_event("2", "b", {})).replace(
        "\n", "\r\n"
    )
    raw = body.encode()
    expected = [SSEEvent("1", "a", {"t": "é🐟"}), SSEEvent("2", "b", {})]
    for size in (1, 2, 3, 5, 7, len(raw)):
        parser = SSEParser()
        events: list[SSEEvent] = []
        for start in range(0, len(raw), size):
            events += parser.feed(raw[start : start + size])
        events += parser.close()
        assert events == expected, size
        assert parser.comments == ["ping"]


async def test_aiter_sse_reads_a_byte_stream() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        wire = encode_event("1", "a", {"x": 1}) + PING + encode_event("2", "b", {"x": 2})
        for i in range(0, len(wire), 4):
            yield wire[i : i + 4].encode()

    assert [event async for event in aiter_sse(chunks())] == [
        SSEEvent("1", "a", {"x": 1}),
        SSEEvent("2", "b", {"x": 2}),
    ]
