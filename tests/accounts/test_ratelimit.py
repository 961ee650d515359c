"""The sliding-window arithmetic of the sign-in rate limit (the HTTP behaviour is in
test_gotrue.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shoal.accounts.ratelimit import seconds_to_wait, window_start


def test_window_start_aligns_to_the_window() -> None:
    now = datetime(2026, 1, 1, 12, 0, 59, 900000, tzinfo=UTC)
    assert window_start(now, 60) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert window_start(now, 3600) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("current", [1, 2, 3])
def test_within_the_limit_passes(current: int) -> None:
    assert seconds_to_wait(previous=0, current=current, elapsed=5, window=60, limit=3) is None


def test_over_the_limit_waits_until_the_window_has_faded_enough() -> None:
    # 3 attempts allowed at the start of a window; the 4th must wait until, in the next window,
    # 3 * (1 - t/60) + 1 <= 3, i.e. t >= 20 s: 60 - 1 + 20 seconds from now.
    assert seconds_to_wait(previous=0, current=4, elapsed=1, window=60, limit=3) == pytest.approx(
        79
    )


def test_a_burst_cannot_double_up_across_the_boundary() -> None:
    # 3 attempts just before the boundary still count just after it.
    wait = seconds_to_wait(previous=3, current=1, elapsed=0.5, window=60, limit=3)
    assert wait is not None and wait > 0
    # Once the previous window has faded, attempts pass again.
    assert seconds_to_wait(previous=3, current=1, elapsed=40, window=60, limit=3) is None


def test_wait_inside_the_window_as_the_previous_one_fades() -> None:
    # previous 3, current 1 (this one refused → 0 counted): next attempt fits when
    # 3 * (1 - t/60) + 1 <= 3  →  t >= 20.
    wait = seconds_to_wait(previous=3, current=1, elapsed=5, window=60, limit=3)
    assert wait == pytest.approx(15)
