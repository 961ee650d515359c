"""``python -m bench [NAME …] [--quick] [--list]``: run benchmarks, write their results and
regenerate ``bench/results/README.md``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from bench.harness import Report, console, load_average, render_readme, write_result

BENCHMARKS = ["floor", "first_token", "throughput", "fanout", "slow_runs", "sandbox_exec"]


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


LOG = Path(tempfile.gettempdir()) / "shoal-bench.log"


def _log_to_file() -> None:
    """The app's warnings and errors (one JSON line each) go to LOG, not over the progress."""
    import structlog

    from shoal.observability.logging import configure_logging

    configure_logging(level="WARNING", json=True)
    stream = LOG.open("w")  # stays open for the whole process
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.getLogger().handlers[0].formatter)
    logging.getLogger().handlers[:] = [handler]
    for noisy in ("LiteLLM", "pika"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


async def _main(names: list[str], quick: bool) -> None:
    _log_to_file()
    for name in names:
        module = _load(name)
        console.rule(f"[bold]{name}[/] — {module.TITLE}")
        started, load_before = time.monotonic(), load_average()
        run = cast(Callable[..., Awaitable[Report]], module.run)
        try:
            report = await run(quick=quick)
        except Exception as exc:  # recorded, and the next benchmark still runs
            console.print_exception(max_frames=4)
            report = Report(notes=[f"the benchmark failed: {type(exc).__name__}: {exc}"[:500]])
        report.parameters.setdefault("quick", quick)
        path = write_result(name, module.TITLE, report, started, load_before)
        console.print(f"  [green]wrote[/] {path.relative_to(path.parents[2])}")
    readme = render_readme(BENCHMARKS)
    console.print(f"[green]wrote[/] {readme.relative_to(readme.parents[2])}")
    console.print(f"[dim]the app's warnings and errors: {LOG}[/]")


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke test)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name in BENCHMARKS:
            console.print(f"{name:12} {_load(name).TITLE}")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})"
        )
    names: list[Any] = args.names or BENCHMARKS
    started = time.monotonic()
    with _runner() as runner:
        try:
            runner.run(_main(names, args.quick))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            return 130
    console.print(f"[bold]done[/] in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
