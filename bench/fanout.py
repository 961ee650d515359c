"""SSE fan-out: one run streams many deltas to 1 and to 100 concurrent subscribers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench import stack
from bench.harness import Report, console, progress, summary, value
from shoal.llm.fake_server import FakeTurn

NAME = "fanout"
TITLE = "SSE fan-out: events/s delivered to 1 and to 100 subscribers of one run"
SUBSCRIBERS = (1, 100)
STALL_SECONDS = 2.0  # after the first chunk, so every subscriber is attached before the burst
MARK = b"\nevent: "  # every event is "id: N\nevent: …\ndata: …"


async def _subscriber(
    s: stack.Stack, run_id: str, attached: asyncio.Queue[float]
) -> tuple[int, float, bool]:
    """(events received, time.monotonic() when the stream closed, ended completed).

    A bare HTTP/1.1 reader rather than httpx: the subscribers share the process with the app,
    and a full client would spend more CPU per event than the server does. Each SSE event is
    one HTTP chunk, so counting ``MARK`` in the raw bytes counts events."""
    where = urlsplit(s.url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    request = (
        f"GET /api/agent-run/{run_id}/stream HTTP/1.1\r\nHost: {where.netloc}\r\n"
        f"Authorization: {s.http.headers['Authorization']}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode())
    count, tail, first, last = 0, b"", True, b""
    try:
        while chunk := await reader.read(65536):
            if first:
                if not chunk.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"stream answered {chunk[:80]!r}")
                attached.put_nowait(time.monotonic())
                first = False
            data = tail + chunk
            count += data.count(MARK)  # a tail is shorter than MARK: nothing counted twice
            tail = data[-(len(MARK) - 1) :]
            last = (last + chunk)[-400:]
    finally:
        writer.close()
    return count, time.monotonic(), b'"status":"completed"' in last


@dataclass
class Burst:
    events_per_subscriber: int
    events_per_second: float
    seconds: float
    attached_before_burst: bool
    complete: bool
    done_ms: list[float]


async def _one(s: stack.Stack, subscribers: int, deltas: int) -> Burst:
    thread_id = await s.new_thread()
    # distinct chunks: LiteLLM aborts a stream that repeats one chunk 100 times
    chunks = [f"w{i} " for i in range(deltas)]
    s.fake.script(FakeTurn(text=chunks, stall_after_first_chunk=STALL_SECONDS))
    requests_before = len(s.fake.records)
    run_id = await s.start(thread_id)
    attached: asyncio.Queue[float] = asyncio.Queue()
    tasks = [asyncio.create_task(_subscriber(s, run_id, attached)) for _ in range(subscribers)]
    with progress() as bar:
        task = bar.add_task(f"{subscribers} subscriber(s) attached", total=subscribers)
        for _ in range(subscribers):
            await asyncio.wait_for(attached.get(), 60)
            bar.advance(task)
        all_attached = time.monotonic()
        results = await asyncio.gather(*tasks)
    record = s.fake.records[requests_before]
    live_from = record.started_at + STALL_SECONDS  # the burst starts when the stall ends
    counts = [count for count, _, _ in results]
    elapsed = max(ended for _, ended, _ in results) - live_from
    return Burst(
        events_per_subscriber=min(counts),
        events_per_second=sum(counts) / elapsed,
        seconds=elapsed,
        attached_before_burst=all_attached <= live_from,
        complete=len(set(counts)) == 1 and all(ok for _, _, ok in results),
        done_ms=[(ended - live_from) * 1000 for _, ended, _ in results],
    )


async def run(quick: bool = False) -> Report:
    deltas = 300 if quick else 1000
    report = Report(
        parameters={
            "subscribers": list(SUBSCRIBERS),
            "text_deltas_per_run": deltas,
            "stall_before_burst_s": STALL_SECONDS,
            "how": "one run per subscriber count; the fake LLM sends its first chunk, stalls "
            "while the subscribers attach (GET /api/agent-run/{id}/stream, each a bare "
            "HTTP/1.1 reader counting events), then sends every other chunk at once; rate = "
            "events received by all subscribers / time from the end of the stall to the last "
            "subscriber's close",
        }
    )
    async with stack.embedded(max_connections=max(SUBSCRIBERS) + 50) as s:
        for subscribers in SUBSCRIBERS:
            burst = await _one(s, subscribers, deltas)
            label = f"{subscribers} subscriber{'s' if subscribers > 1 else ''}"
            report.metrics[f"{label}: events/s delivered"] = value(
                burst.events_per_second, "events/s"
            )
            report.metrics[f"{label}: events per subscriber"] = value(
                burst.events_per_subscriber, "events"
            )
            report.metrics[f"{label}: end of stall → subscriber's last event"] = summary(
                burst.done_ms
            )
            if not burst.attached_before_burst:
                report.notes.append(f"{label}: not every subscriber attached before the burst")
            if not burst.complete:
                report.notes.append(
                    f"{label}: the run did not complete, or subscribers got different counts"
                )
            console.print(
                f"  {label}: {burst.events_per_second:,.0f} events/s "
                f"({burst.events_per_subscriber} events each, burst {burst.seconds:.2f} s)"
            )
    return report
