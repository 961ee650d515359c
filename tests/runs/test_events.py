"""The run's event log over the database: what a failed transaction must not lose."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shoal.threads.repository import MessageRepository
from tests.conftest import TestUser
from tests.runs.conftest import assert_gapless, new_thread, start_run, stored_events, wait_run


async def test_events_of_a_message_transaction_that_fails_are_still_stored(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storing the assistant message also stores the events streamed before it. When that
    transaction fails after taking them (here: the message insert), they must stay pending and
    be stored later, not vanish: the run's seqs stay gapless and every streamed delta is in
    the replay."""
    original = MessageRepository.add
    failed = False

    async def add_failing_once(self: MessageRepository, *args: Any, **kwargs: Any) -> Any:
        nonlocal failed
        if kwargs.get("type") == "assistant" and not failed:
            failed = True
            raise RuntimeError("the database refused the message")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(MessageRepository, "add", add_failing_once)
    thread_id, _ = await new_thread(client, user)
    run_id = await start_run(client, user, thread_id, "hello there")
    run = await wait_run(client, user, run_id)
    assert failed
    assert run["status"] == "failed" and run["error"]["code"] == "internal"
    events = await stored_events(app, run_id)
    assert_gapless(events)
    text = "".join(e["data"]["text"] for e in events if e["type"] == "text_delta")
    assert text == "echo: hello there"
    assert events[-1]["type"] == "run_status" and events[-1]["data"]["status"] == "failed"
