"""What the stack itself costs on this machine, before shoal does anything: the floor under the
first-token and throughput targets.

- HTTP: a bare FastAPI app with a POST answering 202 and a GET streaming one SSE event
  (sse-starlette), served by uvicorn and called by httpx in one event loop — the two requests
  a client makes from "start" to its first ``text_delta``, with no auth, database or run.
- SQL: one lookup by primary key on shoal's own SQLite schema, as an ORM select, a Core select
  built per call, a Core statement built once, the driver's own SQL; and a whole read
  transaction (what an auth check or a stream's run lookup costs at least).
- JWT: one ES256 verification (what every request paid before verified tokens were cached).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sse_starlette import EventSourceResponse, ServerSentEvent

from bench import stack
from bench.harness import Report, console, progress, summary

NAME = "floor"
TITLE = "The floor: bare HTTP round trips, SQL statement and JWT costs on this machine"


def _bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/start", status_code=202)
    async def start(body: dict[str, Any]) -> dict[str, str]:
        return {"agent_run_id": "x", "status": "queued"}

    @app.get("/stream")
    async def stream() -> EventSourceResponse:
        async def events() -> AsyncIterator[ServerSentEvent]:
            yield ServerSentEvent(data='{"type":"text_delta"}', event="text_delta", id="1")

        return EventSourceResponse(events(), sep="\n")

    return app


async def _http(samples: int, warmup: int) -> list[float]:
    out: list[float] = []
    async with stack.serve(_bare_app()) as url, httpx.AsyncClient(base_url=url) as http:
        with progress() as bar:
            task = bar.add_task("bare POST 202 + SSE GET", total=samples + warmup)
            for index in range(samples + warmup):
                began = time.perf_counter()
                await http.post("/start", json={"prompt": "hi"}, headers={"Authorization": "x"})
                async with http.stream("GET", "/stream") as response:
                    async for chunk in response.aiter_raw():
                        if b"text_delta" in chunk:
                            break
                if index >= warmup:
                    out.append((time.perf_counter() - began) * 1000)
                bar.advance(task)
    return out


async def _timed(count: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    out = []
    for _ in range(count):
        began = time.perf_counter()
        await call()
        out.append((time.perf_counter() - began) * 1_000_000)
    return out


async def _sql(count: int) -> dict[str, list[float]]:
    from sqlalchemy import bindparam, select

    from shoal.db.engine import create_engine, read_factory, session_factory
    from shoal.db.migrate import upgrade
    from shoal.db.models import AgentRun

    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'floor.db'}"
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        reads = read_factory(session_factory(engine))
        run_id = uuid.uuid4()
        table = AgentRun.__table__
        prebuilt = select(table).where(table.c.id == bindparam("id"))
        results: dict[str, list[float]] = {}
        try:
            async with reads() as session:
                connection = await session.connection()
                cases: dict[str, Callable[[], Awaitable[Any]]] = {
                    "ORM select by id (built per call)": lambda: session.execute(
                        select(AgentRun).where(AgentRun.id == run_id)
                    ),
                    "Core select by id (built per call)": lambda: session.execute(
                        select(table).where(table.c.id == run_id)
                    ),
                    "Core select by id (built once)": lambda: session.execute(
                        prebuilt, {"id": run_id}
                    ),
                    "driver SQL (exec_driver_sql)": lambda: connection.exec_driver_sql(
                        "SELECT * FROM agent_runs WHERE id = ?", (run_id.hex,)
                    ),
                }
                for label, call in cases.items():
                    await _timed(count // 10, call)  # warm the statement caches
                    results[label] = await _timed(count, call)

            async def transaction() -> None:
                async with reads() as session:
                    await session.execute(prebuilt, {"id": run_id})

            await _timed(count // 10, transaction)
            results["read transaction with one statement"] = await _timed(count, transaction)
        finally:
            await engine.dispose()
    return results


async def _jwt(count: int) -> list[float]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        {"sub": "u", "aud": "authenticated", "exp": int(time.time()) + 3600}, key, "ES256"
    )
    public = key.public_key()

    async def verify() -> None:
        jwt.decode(token, public, algorithms=["ES256"], audience="authenticated")

    return await _timed(count, verify)


async def run(quick: bool = False) -> Report:
    samples, statements = (100, 500) if quick else (500, 3000)
    report = Report(
        parameters={
            "http_samples": samples,
            "statement_samples": statements,
            "how": __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        }
    )
    http = await _http(samples, warmup=50)
    report.metrics["bare POST 202 + SSE GET to the first event (same loop)"] = summary(http)
    for label, values in (await _sql(statements)).items():
        report.metrics[f"SQLite: {label}"] = summary(values, unit="µs")
    report.metrics["ES256 JWT verification"] = summary(await _jwt(statements // 3), unit="µs")
    console.print(
        f"  bare HTTP start + stream to the first event: p50 {summary(http)['p50']:.2f} ms"
    )
    return report
