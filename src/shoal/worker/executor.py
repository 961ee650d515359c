"""A generic asyncio executor: hundreds of long-lived jobs per process, keyed, cancellable.

Jobs spend their lives waiting on an LLM or a sandbox, so one event loop holds hundreds of
them. ``capacity`` bounds how many run at once; :meth:`submit` waits for a free slot (which
gives backpressure to a broker delivering work). :meth:`drain` stops accepting, waits for the
running jobs up to a timeout, then cancels the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

import structlog

log = structlog.get_logger(__name__)
Job = Callable[[], Awaitable[None]]


class ExecutorClosed(Exception):
    pass


class Executor:
    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        self._slots = asyncio.Semaphore(capacity)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._accepting = True

    @property
    def active(self) -> int:
        return len(self._tasks)

    def running(self, key: str) -> bool:
        return key in self._tasks

    def keys(self) -> list[str]:
        return list(self._tasks)

    async def submit(self, key: str, job: Job) -> bool:
        """Start ``job`` under ``key`` once a slot is free. False if ``key`` already runs."""
        if not self._accepting:
            raise ExecutorClosed("executor is draining")
        if key in self._tasks:
            return False
        await self._slots.acquire()
        if not self._accepting or key in self._tasks:
            self._slots.release()
            if not self._accepting:
                raise ExecutorClosed("executor is draining")
            return False
        task = asyncio.create_task(self._run(key, job), name=f"job:{key}")
        self._tasks[key] = task
        return True

    async def reserve(self) -> bool:
        """Take a free slot now, or answer False at once (never waits). The caller hands it
        to :meth:`start_reserved` or gives it back with :meth:`release`."""
        if not self._accepting or self._slots.locked():
            return False
        await self._slots.acquire()  # free: returns without yielding to the loop
        return True

    def release(self) -> None:
        self._slots.release()

    def start_reserved(self, key: str, job: Job) -> bool:
        """Start ``job`` in a slot taken with :meth:`reserve`. False (slot given back) if
        ``key`` already runs."""
        if key in self._tasks:
            self._slots.release()
            return False
        self._tasks[key] = asyncio.create_task(self._run(key, job), name=f"job:{key}")
        return True

    async def _run(self, key: str, job: Job) -> None:
        try:
            await job()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("job_crashed", key=key)
        finally:
            self._tasks.pop(key, None)
            self._slots.release()

    def cancel(self, key: str, msg: str | None = None) -> bool:
        task = self._tasks.get(key)
        if task is None:
            return False
        task.cancel(msg)
        return True

    async def wait(self, key: str) -> None:
        task = self._tasks.get(key)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def drain(
        self, grace_seconds: float, *, on_timeout: Callable[[str], None] | None = None
    ) -> None:
        """Stop accepting; wait up to ``grace_seconds`` for jobs, then cancel what is left."""
        self._accepting = False
        pending = list(self._tasks.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace_seconds)
            for key, task in list(self._tasks.items()):
                if task in still:
                    if on_timeout is not None:
                        on_timeout(key)
                    else:
                        task.cancel("drain")
            if still:
                await asyncio.wait(still, timeout=max(5.0, grace_seconds))


class LoopThread:
    """An event loop in a daemon thread, for hosts whose own threads are synchronous
    (Dramatiq's worker threads hand jobs to it and return at once)."""

    def __init__(self, name: str = "shoal-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = threading.Event()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def run(self, coro: Awaitable[Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def stop(self, timeout: float = 10.0) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
