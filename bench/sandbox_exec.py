"""Local sandbox exec round trip: `echo` through the exec agent of a started bwrap sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import Report, console, progress, summary
from shoal.sandbox import LocalLimits, LocalProvider, SandboxSpec

NAME = "sandbox_exec"
TITLE = "Local sandbox: exec round trip, cancel latency and cold start"


def _running(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return True
            except OSError:
                continue
    return False


async def _until(probe: Callable[[str], bool], marker: str, *, present: bool) -> None:
    while probe(marker) != present:  # noqa: ASYNC110 - polling /proc: nothing to wait on
        await asyncio.sleep(0.002)


async def _cancel_latencies(provider: LocalProvider, sandbox_id: str, count: int) -> list[float]:
    """What a run's stop costs during a command: cancel the exec call, then wait until the
    command's process is gone from the host."""
    samples = []
    for index in range(count):
        marker = f"600.{index:04d}7"
        task = asyncio.create_task(provider.exec(sandbox_id, f"sleep {marker}"))
        await _until(_running, f"sleep\0{marker}", present=True)
        began = time.perf_counter()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await _until(_running, f"sleep\0{marker}", present=False)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def run(quick: bool = False) -> Report:
    count = 50 if quick else 500
    report = Report(
        parameters={
            "execs": count,
            "provider": "local (bubblewrap + exec agent over a unix socket)",
            "how": "one sandbox created and started (timed: cold start), then `echo ok` run "
            "sequentially through provider.exec; each sample is call → exit frame received, "
            "output captured; then `sleep 600` commands are started and their exec calls "
            "cancelled (what a run's stop does), timed until the process is gone from the "
            "host; the sandbox is deleted afterwards",
        }
    )
    root = Path(tempfile.mkdtemp(prefix="shoal-bench-sbx-", dir="/var/tmp"))
    os.chmod(root, 0o711)
    provider = LocalProvider(root, limits=LocalLimits(), uid_base=400_000)
    try:
        info = await provider.create(SandboxSpec())
        started = time.perf_counter()
        await provider.start(info.sandbox_id)
        cold_ms = (time.perf_counter() - started) * 1000
        samples: list[float] = []
        with progress() as bar:
            task = bar.add_task("exec echo", total=count)
            for _ in range(count):
                began = time.perf_counter()
                result = await provider.exec(info.sandbox_id, "echo ok")
                samples.append((time.perf_counter() - began) * 1000)
                if result.stdout != "ok\n":
                    report.notes.append(f"unexpected output {result.stdout!r}")
                    break
                bar.advance(task)
        report.metrics["exec round trip (echo ok)"] = summary(samples)
        report.metrics["cancel → command gone (sleep 600)"] = summary(
            await _cancel_latencies(provider, info.sandbox_id, 5 if quick else 20)
        )
        report.metrics["cold start (create → started)"] = summary([cold_ms])
        stats = report.metrics["exec round trip (echo ok)"]
        console.print(
            f"  exec p50 {stats['p50']:.1f} ms, p99 {stats['p99']:.1f} ms; cold start "
            f"{cold_ms:.0f} ms"
        )
        await provider.delete(info.sandbox_id)
    finally:
        await provider.aclose()
        shutil.rmtree(root, ignore_errors=True)
    return report
