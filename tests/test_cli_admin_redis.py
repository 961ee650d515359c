"""`shoal runs stop` with Redis: the CLI's stop signal reaches the serving process at once —
the run stops long before the (deliberately slow) heartbeat would have read the stop flag."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from shoal.config import Settings
from shoal.llm.base import ChatModel
from tests.conftest import TestUser
from tests.streaming.conftest import REDIS_URL, redis_admin
from tests.test_cli_admin import PromptModel, _shoal, _start, _wait_status

pytestmark = pytest.mark.services
HEARTBEAT = 30.0  # the heartbeat alone would take up to this long to notice the flag


@pytest.fixture
async def settings_overrides() -> dict[str, Any]:
    client = await redis_admin()  # skips (or fails in CI) when Redis is down
    await client.aclose()
    return {
        "redis_url": REDIS_URL,
        "run_heartbeat_seconds": HEARTBEAT,
        "run_lease_seconds": HEARTBEAT * 3,
        "billing_enabled": True,
        "stripe_secret_key": "sk_test_unused",
        "stripe_webhook_secret": "whsec_unused",
    }


@pytest.fixture
def chat_model() -> ChatModel:
    return PromptModel()


async def test_cli_stop_signal_reaches_the_worker_through_redis(
    client: httpx.AsyncClient, settings: Settings, user: TestUser, chat_model: PromptModel
) -> None:
    running, _ = await _start(client, user, "stall")
    await asyncio.wait_for(chat_model.stalled.wait(), 30)
    began = time.monotonic()
    stopped = await _shoal(settings, "runs", "stop", running)
    assert stopped.exit_code == 0, stopped.output
    assert "stop requested" in stopped.output
    run = await _wait_status(client, user, running, "stopped", "failed", "completed")
    assert run["status"] == "stopped"
    assert time.monotonic() - began < HEARTBEAT / 2, "stopped by the heartbeat, not the signal"
