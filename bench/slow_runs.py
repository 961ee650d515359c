"""How many concurrent runs one process sustains while the LLM answers slowly (30 s each)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from bench import stack
from bench.harness import Report, Target, console, progress, summary, value
from shoal.db.models import AgentRun, Message
from shoal.llm.fake_server import FakeTurn

NAME = "slow_runs"
TITLE = "Concurrent slow runs in one embedded process (each LLM stream lasts 30 s)"
LEVELS = (100, 250, 500)
# 10 chunks, 3 s after each: a 30 s stream — long enough that every run of a level is in flight
# at once (a level counts only if it really was: peak running ≥ CONCURRENT_SHARE × N).
CHUNKS, CHUNK_DELAY = 10, 3.0
CONCURRENT_SHARE = 0.95
ANSWER = "".join(f"part{i} " for i in range(CHUNKS))
GOAL = 500


async def _threads(s: stack.Stack, count: int) -> list[str]:
    """``count`` threads (setup, not measured): 10 at a time, each retried a few times."""

    async def one() -> str:
        for attempt in range(4):
            try:
                return await s.new_thread()
            except Exception:
                if attempt == 3:
                    raise
                await asyncio.sleep(1)
        raise AssertionError("unreachable")

    out: list[str] = []
    for offset in range(0, count, 10):
        out += await asyncio.gather(*(one() for _ in range(min(10, count - offset))))
    return out


async def _statuses(s: stack.Stack, ids: list[uuid.UUID]) -> Counter[str]:
    async with s.app.state.session_factory() as session:
        rows = await session.execute(
            select(AgentRun.status, func.count())
            .where(AgentRun.id.in_(ids))
            .group_by(AgentRun.status)
        )
        return Counter({str(status): int(count) for status, count in rows.all()})


async def _verify(s: stack.Stack, ids: list[uuid.UUID]) -> tuple[int, list[float]]:
    """(runs completed with exactly the scripted answer, run durations in s)."""
    async with s.app.state.session_factory() as session:
        answers = await session.execute(
            select(Message.agent_run_id, Message.content).where(
                Message.agent_run_id.in_(ids), Message.type == "assistant"
            )
        )
        good = {run_id for run_id, content in answers.all() if content.get("content") == ANSWER}
        runs = await session.execute(
            select(AgentRun.id, AgentRun.status, AgentRun.started_at, AgentRun.completed_at).where(
                AgentRun.id.in_(ids)
            )
        )
        correct, durations = 0, list[float]()
        for run_id, status, started_at, completed_at in runs.all():
            if status == "completed" and run_id in good:
                correct += 1
            if started_at and completed_at:
                durations.append((completed_at - started_at).total_seconds())
        return correct, durations


async def _until_terminal(
    s: stack.Stack, started: list[uuid.UUID], count: int, deadline: float, peak: int
) -> tuple[int, Counter[str]]:
    """Poll until every started run is terminal (or the deadline): (peak running, statuses)."""
    statuses = Counter[str]()
    with progress() as bar:
        task = bar.add_task(f"{count} runs finished", total=count)
        while time.monotonic() < deadline:
            try:
                statuses = await _statuses(s, started)
            except Exception:  # the app's own pool may be exhausted: look again
                await asyncio.sleep(0.5)
                continue
            peak = max(peak, statuses["running"])
            done = sum(statuses[k] for k in stack.TERMINAL)
            bar.update(task, completed=done)
            if done == len(started):
                break
            await asyncio.sleep(0.5)
    return peak, statuses


async def _level(s: stack.Stack, count: int) -> dict[str, Any]:
    threads = await _threads(s, count)
    turn = FakeTurn(text=[f"part{i} " for i in range(CHUNKS)], chunk_delay=CHUNK_DELAY)
    s.fake.script(*([turn] * count))
    latencies: list[float] = []
    refused: Counter[str] = Counter()

    async def start(thread_id: str) -> uuid.UUID | None:
        began = time.perf_counter()
        try:
            run_id = await s.start(thread_id)
        except Exception as exc:
            refused[str(exc)[:120]] += 1
            return None
        latencies.append((time.perf_counter() - began) * 1000)
        return uuid.UUID(run_id)

    began = time.monotonic()
    accepted: list[uuid.UUID] = []
    peak = [0]

    async def watch_while_starting() -> None:  # runs that finish early still count in the peak
        while True:
            with contextlib.suppress(Exception):
                if accepted:
                    peak[0] = max(peak[0], (await _statuses(s, list(accepted)))["running"])
            await asyncio.sleep(0.5)

    async def start_and_note(thread_id: str) -> uuid.UUID | None:
        run_id = await start(thread_id)
        if run_id is not None:
            accepted.append(run_id)
        return run_id

    watcher = asyncio.create_task(watch_while_starting())
    started = [
        r for r in await asyncio.gather(*(start_and_note(t) for t in threads)) if r is not None
    ]
    all_started = time.monotonic() - began
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    deadline = began + CHUNKS * CHUNK_DELAY + 60 + count * 0.1
    peak_running, statuses = await _until_terminal(s, started, count, deadline, peak[0])
    wall = time.monotonic() - began
    correct, durations = 0, list[float]()
    for _ in range(10):
        try:
            correct, durations = await _verify(s, started)
            break
        except Exception:
            await asyncio.sleep(3)
    return {
        "started": len(started),
        "refused": dict(refused),
        "start_ms": summary(latencies),
        "all_started_s": all_started,
        "statuses": dict(statuses),
        "correct": correct,
        "peak_running": peak_running,
        "wall_s": wall,
        "run_s": summary(durations, "s"),
    }


async def run(quick: bool = False) -> Report:
    levels = (20, 50) if quick else LEVELS
    report = Report(
        parameters={
            "levels": list(levels),
            "llm_stream": f"{CHUNKS} chunks, {CHUNK_DELAY} s apart "
            f"(≈ {CHUNKS * CHUNK_DELAY:.0f} s)",
            "how": "create N threads, then start N runs at once (POST …/agent/start, all "
            "concurrent); poll the database (also while the starts are answered) until every "
            "run is terminal; a run is correct when it completed and its stored answer is "
            "exactly the scripted text; a level is sustained when every run is correct and "
            f"at least {CONCURRENT_SHARE:.0%} of N were running at once",
            "settings": "embedded defaults (SQLite, in-process queue and bus), "
            "SHOAL_WORKER_MAX_RUNS=500 (default), account cap raised",
        }
    )
    sustained = 0
    for count in levels:  # a fresh process state per level: one level cannot spoil the next
        async with stack.embedded(max_connections=count + 50) as s:
            await s.wait_terminal(await s.start(await s.new_thread()))  # warm up LiteLLM
            result = await _level(s, count)
            label = f"N={count}"
            report.metrics[f"{label}: start → 202"] = result["start_ms"]
            report.metrics[f"{label}: run duration (started → completed)"] = result["run_s"]
            report.metrics[f"{label}: completed correctly"] = value(result["correct"], "runs")
            report.metrics[f"{label}: peak running at once"] = value(result["peak_running"], "runs")
            report.metrics[f"{label}: wall time"] = value(result["wall_s"], "s")
            concurrent = result["peak_running"] >= CONCURRENT_SHARE * count
            if result["correct"] == count and concurrent:
                sustained = max(sustained, count)
            elif result["correct"] == count:
                report.notes.append(
                    f"{label}: all correct, but at most {result['peak_running']} ran at once "
                    f"(< {CONCURRENT_SHARE:.0%} of {count}): not counted as sustained"
                )
            else:
                report.notes.append(
                    f"{label}: {result['correct']} of {count} correct; statuses "
                    f"{result['statuses']}; refused starts {result['refused'] or 'none'}"
                )
            console.print(
                f"  N={count}: {result['correct']}/{count} correct, peak running "
                f"{result['peak_running']}, start p50 {result['start_ms'].get('p50', 0):.0f} ms "
                f"p99 {result['start_ms'].get('p99', 0):.0f} ms, wall {result['wall_s']:.1f} s"
            )
    report.metrics["largest level fully correct"] = value(sustained, "runs")
    report.targets.append(
        Target(
            "concurrent slow runs, all correct and in flight at once", sustained, GOAL, unit="runs"
        )
    )
    return report
