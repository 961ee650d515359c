"""Runs per second with 20 in flight (short answers), beside direct LiteLLM calls per second
at the same concurrency against the same fake LLM server."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

from bench import direct, stack
from bench.harness import Report, Target, console, progress, summary, value

NAME = "throughput"
TITLE = "Throughput at 20 in flight: shoal runs/s vs. direct LiteLLM calls/s"
IN_FLIGHT = 20
GOAL_SHARE = 0.8


async def _closed_loop(
    count: int, job: Callable[[int], Awaitable[str]], label: str
) -> tuple[float, list[float], Counter[str]]:
    """``count`` jobs with ``IN_FLIGHT`` at a time: (seconds, latencies in ms, outcomes)."""
    numbers: Iterator[int] = iter(range(count))
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    with progress() as bar:
        task = bar.add_task(label, total=count)

        async def client() -> None:
            for number in numbers:
                began = time.perf_counter()
                outcomes[await job(number)] += 1
                latencies.append((time.perf_counter() - began) * 1000)
                bar.advance(task)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(IN_FLIGHT)))
        elapsed = time.perf_counter() - began
    return elapsed, latencies, outcomes


async def _threads(s: stack.Stack, count: int) -> list[str]:
    out: list[str] = []
    for offset in range(0, count, IN_FLIGHT):
        batch = min(IN_FLIGHT, count - offset)
        out += await asyncio.gather(*(s.new_thread() for _ in range(batch)))
    return out


async def run(quick: bool = False) -> Report:
    runs, calls, warmup = (60, 100, IN_FLIGHT) if quick else (300, 600, IN_FLIGHT)
    report = Report(
        parameters={
            "in_flight": IN_FLIGHT,
            "shoal_runs": runs,
            "direct_calls": calls,
            "warmup": warmup,
            "answer": "the fake server's default turn (31 characters, 4 chunks)",
            "run": "POST …/agent/start, then follow /api/agent-run/{id}/stream to the end "
            "(each run on its own pre-created thread)",
            "call": "litellm.acompletion(stream=True), consumed to the end",
        }
    )
    module = await direct.litellm()
    async with stack.embedded() as s:
        threads = await _threads(s, runs + warmup)

        async def shoal_run(number: int) -> str:
            try:
                run_id = await s.start(threads[number])
            except Exception as exc:  # counted: a refused or failed start is a failed run
                return f"start failed: {str(exc)[:80]}"
            return await s.wait_terminal(run_id)

        async def direct_call(_number: int) -> str:
            await direct.first_chunk(module, s.fake.url)
            return "completed"

        await _closed_loop(warmup, lambda n: shoal_run(runs + n), "warm-up")
        shoal_s, shoal_ms, outcomes = await _closed_loop(runs, shoal_run, "shoal runs")
        await _closed_loop(warmup, direct_call, "warm-up")
        direct_s, direct_ms, _ = await _closed_loop(calls, direct_call, "direct LiteLLM calls")
    shoal_rate, direct_rate = outcomes["completed"] / shoal_s, calls / direct_s
    share = shoal_rate / direct_rate
    report.metrics["shoal runs/s (completed)"] = value(shoal_rate, "runs/s")
    report.metrics["direct LiteLLM calls/s"] = value(direct_rate, "calls/s")
    report.metrics["shoal / direct"] = value(share * 100, "%")
    report.metrics["shoal run latency (start → terminal event)"] = summary(shoal_ms)
    report.metrics["direct call latency"] = summary(direct_ms)
    report.targets.append(
        Target(
            "share of direct throughput at 20 in flight", share * 100, GOAL_SHARE * 100, unit="%"
        )
    )
    bad = runs - outcomes["completed"]
    if bad:
        report.notes.append(f"{bad} of {runs} runs did not complete: {dict(outcomes)}")
    console.print(
        f"  shoal {shoal_rate:.1f} runs/s, direct {direct_rate:.1f} calls/s → {share:.0%} "
        f"(runs completed: {outcomes['completed']}/{runs})"
    )
    return report
