"""Start → first ``text_delta`` on the run stream, beside a direct LiteLLM call's first chunk."""

from __future__ import annotations

import time
from typing import Any

from bench import direct, stack
from bench.harness import Report, Target, console, progress, summary

NAME = "first_token"
TITLE = "Time to first token: shoal run vs. direct LiteLLM"
TARGETS_MS = {"embedded": 5.0, "services": 15.0}


async def _shoal_sample(s: stack.Stack, thread_id: str) -> tuple[float, float, str]:
    """(ms to the 202, ms to the first text_delta, final status), following the stream to
    its end so runs never overlap."""
    began = time.perf_counter()
    try:
        run_id = await s.start(thread_id)
    except Exception as exc:
        return 0.0, 0.0, f"start failed: {str(exc)[:80]}"
    accepted = time.perf_counter()
    first: float | None = None
    tail = b""
    async with s.stream(run_id) as response:
        async for chunk in response.aiter_raw():
            if first is None and b"event: text_delta" in chunk:
                first = time.perf_counter()
            tail = (tail + chunk)[-600:]
    if first is None:
        raise RuntimeError(f"run {run_id} streamed no text")
    status = "completed" if b'"status":"completed"' in tail else "other"
    return (accepted - began) * 1000, (first - began) * 1000, status


async def _measure(s: stack.Stack, runs: int, warmup: int, label: str) -> dict[str, Any]:
    module = await direct.litellm()
    threads = [await s.new_thread() for _ in range(runs + warmup)]
    start_ms: list[float] = []
    shoal_ms: list[float] = []
    direct_ms: list[float] = []
    failures = 0
    with progress() as bar:
        task = bar.add_task(f"{label}: shoal run ⇄ direct call", total=runs + warmup)
        for index, thread_id in enumerate(threads):
            accepted, first, status = await _shoal_sample(s, thread_id)
            direct_first, _ = await direct.first_chunk(module, s.fake.url)
            if index >= warmup:  # alternate, so both see the same conditions
                direct_ms.append(direct_first * 1000)
                if status.startswith("start failed"):
                    failures += 1
                else:
                    start_ms.append(accepted)
                    shoal_ms.append(first)
                    failures += status != "completed"
            bar.advance(task)
    shoal, baseline = summary(shoal_ms), summary(direct_ms)
    return {
        "start": summary(start_ms),
        "shoal": shoal,
        "direct": baseline,
        "overhead_p50": shoal["p50"] - baseline["p50"],
        "overhead_p99": shoal["p99"] - baseline["p99"],
        "ratio_p50": shoal["p50"] / baseline["p50"],
        "failures": failures,
    }


def _record(report: Report, label: str, result: dict[str, Any]) -> None:
    report.metrics[f"{label}: start → 202"] = result["start"]
    report.metrics[f"{label}: start → first text_delta"] = result["shoal"]
    report.metrics[f"{label}: direct LiteLLM → first chunk"] = result["direct"]
    report.metrics[f"{label}: overhead p50"] = {"unit": "ms", "value": result["overhead_p50"]}
    report.metrics[f"{label}: overhead p99"] = {"unit": "ms", "value": result["overhead_p99"]}
    report.metrics[f"{label}: ratio p50 (shoal / direct)"] = {
        "unit": "x",
        "value": round(result["ratio_p50"], 2),
    }
    report.targets.append(
        Target(
            f"{label}: first-token overhead vs. direct LiteLLM (p50)",
            result["overhead_p50"],
            TARGETS_MS[label],
            higher_is_better=False,
            unit="ms",
        )
    )
    if result["failures"]:
        report.notes.append(
            f"{label}: {result['failures']} runs did not complete (failed starts are not "
            "in the samples)"
        )
    console.print(
        f"  {label}: shoal p50 {result['shoal']['p50']:.1f} ms, direct p50 "
        f"{result['direct']['p50']:.1f} ms → overhead {result['overhead_p50']:+.1f} ms "
        f"(×{result['ratio_p50']:.2f})"
    )


async def run(quick: bool = False) -> Report:
    runs, warmup = (10, 3) if quick else (50, 5)
    report = Report(
        parameters={
            "runs": runs,
            "warmup": warmup,
            "model": stack.FAKE_MODEL,
            "answer": "the fake server's default turn (31 characters, 4 chunks)",
            "order": "alternating: one shoal run, then one direct call",
        }
    )
    async with stack.embedded() as s:
        _record(report, "embedded", await _measure(s, runs, warmup, "embedded"))
    try:
        async with stack.services() as s:
            _record(report, "services", await _measure(s, runs, warmup, "services"))
            report.notes += [f"services: {note}" for note in s.notes]
    except stack.Unavailable as exc:
        report.notes.append(f"services part skipped: {exc}")
        console.print(f"  [yellow]services part skipped:[/] {exc}")
    return report
