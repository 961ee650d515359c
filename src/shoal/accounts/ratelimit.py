"""Sign-in rate limit: sliding-window counters in the database, shared by every replica.

Counters are kept per key (``email:<address>``, ``ip:<client>``) and fixed window; the limit is
applied to a sliding window estimated from the current and the previous fixed window (the
previous count fades out linearly), so a burst cannot double up across a window boundary.

Each call counts the attempt in its own committed transaction — a failed sign-in rolls back the
request's work but never its count. A refused attempt is not counted (it checked no password),
so hammering does not extend the wait.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shoal.accounts.repository import AccountRepository
from shoal.db.session import unit_of_work
from shoal.kit.time import utcnow

log = structlog.get_logger(__name__)
_GLOBAL_PURGE_ONE_IN = 50


def window_start(now: datetime, window_seconds: int) -> datetime:
    epoch = now.timestamp()
    return datetime.fromtimestamp(epoch - epoch % window_seconds, UTC)


def seconds_to_wait(
    *, previous: int, current: int, elapsed: float, window: float, limit: int
) -> float | None:
    """``None`` when ``current`` (this attempt included) is within the limit; otherwise how long
    until one more attempt would be."""
    if previous * (1 - elapsed / window) + current <= limit:
        return None
    current -= 1  # the refused attempt does not count
    if current + 1 <= limit and previous > 0:
        # Later in this window, once enough of the previous window has faded.
        return window * (1 - (limit - current - 1) / previous) - elapsed
    # In the next window, when this window's attempts have faded enough.
    fade = window * (1 - (limit - 1) / current) if current > 0 else 0.0
    return window - elapsed + max(0.0, fade)


async def hit(
    factory: async_sessionmaker[AsyncSession],
    keys: Sequence[str],
    *,
    limit: int,
    window_seconds: int,
) -> int | None:
    """Count one attempt against every key; seconds to wait when any is over ``limit``."""
    now = utcnow()
    start = window_start(now, window_seconds)
    previous_start = start - timedelta(seconds=window_seconds)
    elapsed = (now - start).total_seconds()
    waits: list[float] = []
    unique = sorted(set(keys))
    async with unit_of_work(factory) as session:
        repo = AccountRepository(session)
        await repo.purge_login_attempts(before=previous_start, keys=unique)
        for key in unique:
            current = await repo.count_login_attempt(key, start)
            previous = await repo.login_attempts(key, previous_start)
            wait = seconds_to_wait(
                previous=previous,
                current=current,
                elapsed=elapsed,
                window=window_seconds,
                limit=limit,
            )
            if wait is not None:
                waits.append(wait)
        if waits:
            for key in unique:
                await repo.uncount_login_attempt(key, start)
    if secrets.randbelow(_GLOBAL_PURGE_ONE_IN) == 0:
        await _purge_all(factory, before=previous_start)
    return max(1, math.ceil(max(waits))) if waits else None


async def _purge_all(factory: async_sessionmaker[AsyncSession], *, before: datetime) -> None:
    """Housekeeping for keys that never come back; best effort, never fails a request."""
    try:
        async with unit_of_work(factory) as session:
            await AccountRepository(session).purge_login_attempts(before=before)
    except SQLAlchemyError:
        log.warning("login_attempts_purge_failed", exc_info=True)
