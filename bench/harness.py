"""Timing, summaries, the environment record, result files and the README table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
console = Console(stderr=True, highlight=False)


def summary(samples: list[float], unit: str = "ms") -> dict[str, Any]:
    """Count, mean, min, p50/p95/p99 (nearest-rank) and max of ``samples``."""
    if not samples:
        return {"unit": unit, "samples": 0}
    ordered = sorted(samples)

    def pct(p: float) -> float:
        index = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]

    return {
        "unit": unit,
        "samples": len(ordered),
        "mean": round(statistics.fmean(ordered), 3),
        "min": round(ordered[0], 3),
        "p50": round(pct(50), 3),
        "p95": round(pct(95), 3),
        "p99": round(pct(99), 3),
        "max": round(ordered[-1], 3),
    }


def value(number: float, unit: str) -> dict[str, Any]:
    """A single measured value (a rate, a count) in the same shape as a summary."""
    return {"unit": unit, "value": round(number, 3)}


def git_commit() -> str | None:
    """The checked-out commit, read from .git without running git."""
    git = ROOT / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        for base in (git, Path(str(git).split("/worktrees/")[0])):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


def environment() -> dict[str, Any]:
    import asyncio

    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "event_loop": loop,
        "git_commit": git_commit(),
    }


@dataclass
class Target:
    """A goal reported against (never asserted)."""

    description: str
    measured: float | None
    goal: float
    higher_is_better: bool = True
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.goal if self.higher_is_better else self.measured <= self.goal

    def as_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "measured": None if self.measured is None else round(self.measured, 3),
            "goal": self.goal,
            "comparison": ">=" if self.higher_is_better else "<=",
            "unit": self.unit,
            "met": self.met,
        }


@dataclass
class Report:
    """What a benchmark hands back; the harness adds name, times and environment."""

    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on every platform
        return None


def write_result(
    name: str, title: str, report: Report, started: float, load_before: float | None
) -> Path:
    """Write ``results/<name>.json``. The 1-minute load average before and after is recorded:
    other work on the machine skews every number here."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = environment()
    env["load_average_1m"] = {"before": load_before, "after": load_average()}
    body = {
        "name": name,
        "title": title,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "environment": env,
        "parameters": report.parameters,
        "metrics": report.metrics,
        "targets": [t.as_dict() for t in report.targets],
        "notes": report.notes,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def _fmt(number: Any) -> str:
    if number is None:
        return "–"
    if isinstance(number, float):
        return f"{number:,.1f}" if abs(number) >= 100 else f"{number:,.2f}"
    return f"{number:,}"


def render_readme(order: list[str]) -> Path:
    """``bench/results/README.md`` from every result file (known benchmarks first)."""
    results = []
    for path in sorted(RESULTS.glob("*.json")):
        results.append(json.loads(path.read_text()))
    rank = {name: i for i, name in enumerate(order)}
    results.sort(key=lambda r: (rank.get(r["name"], len(rank)), r["name"]))
    lines = [
        "# Benchmark results",
        "",
        "Generated by `make bench` (`python -m bench`) from the JSON files in this directory;",
        "see [docs/benchmarks.md](../../docs/benchmarks.md) for what each one measures.",
        "Targets are reported, not asserted.",
        "",
        "## Targets",
        "",
        "| benchmark | target | measured | goal | met |",
        "|---|---|---:|---:|:---:|",
    ]
    for result in results:
        for target in result["targets"]:
            met = {True: "yes", False: "**no**", None: "n/a"}[target["met"]]
            unit = f" {target['unit']}" if target["unit"] else ""
            lines.append(
                f"| {result['name']} | {target['description']} | {_fmt(target['measured'])}{unit}"
                f" | {target['comparison']} {_fmt(target['goal'])}{unit} | {met} |"
            )
    lines += [
        "",
        "## Measurements",
        "",
        "| benchmark | metric | unit | n | p50 | p95 | p99 | mean | value |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for metric, data in result["metrics"].items():
            lines.append(
                f"| {result['name']} | {metric} | {data.get('unit', '')} | "
                f"{_fmt(data.get('samples'))} | {_fmt(data.get('p50'))} | "
                f"{_fmt(data.get('p95'))} | "
                f"{_fmt(data.get('p99'))} | {_fmt(data.get('mean'))} | {_fmt(data.get('value'))} |"
            )
    lines += [
        "",
        "## Runs",
        "",
        "| benchmark | finished | took | CPUs | load (1 min, before → after) | Python | loop "
        "| commit |",
        "|---|---|---:|---:|---|---|---|---|",
    ]
    for result in results:
        env = result["environment"]
        commit = (env.get("git_commit") or "–")[:10]
        load = env.get("load_average_1m") or {}
        lines.append(
            f"| {result['name']} | {result['finished_at']} | {result['duration_s']} s | "
            f"{env['cpu_count']} | {_fmt(load.get('before'))} → {_fmt(load.get('after'))} | "
            f"{env['python']} | {env['event_loop']} | {commit} |"
        )
    notes = [(r["name"], n) for r in results for n in r["notes"]]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- **{name}**: {note}" for name, note in notes]
    path = RESULTS / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def progress() -> Progress:
    return Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def python_version() -> str:
    return sys.version.split()[0]
