"""Messages: shape, chat-message validation, size limit, ordering by seq under concurrency."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import TestUser
from tests.threads.conftest import Api

MESSAGE_FIELDS = {
    "message_id",
    "thread_id",
    "agent_run_id",
    "type",
    "is_llm_message",
    "content",
    "metadata",
    "created_at",
}


async def test_text_becomes_a_user_chat_message(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    thread = await api.thread(user, name="t")
    response = await client.post(
        f"/api/threads/{thread['thread_id']}/messages",
        json={"content": "Hello there"},
        headers=user.headers,
    )
    assert response.status_code == 201
    message = response.json()
    assert set(message) >= MESSAGE_FIELDS
    assert message["thread_id"] == thread["thread_id"]
    assert message["type"] == "user"
    assert message["is_llm_message"] is True
    assert message["agent_run_id"] is None
    assert message["metadata"] == {}
    assert message["content"] == {"role": "user", "content": "Hello there"}
    assert message["seq"] == 1

    history = await client.get(f"/api/threads/{thread['thread_id']}/messages", headers=user.headers)
    assert history.status_code == 200
    assert history.json() == {"messages": [message], "next_cursor": None, "stream_cursor": None}


async def test_explicit_user_type_and_chat_message_objects(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    thread = await api.thread(user)
    parts: dict[str, Any] = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/a.png", "detail": "low"},
            },
        ],
    }
    for content in ({"role": "user", "content": "plain"}, parts):
        response = await client.post(
            f"/api/threads/{thread['thread_id']}/messages",
            json={"content": content, "type": "user"},
            headers=user.headers,
        )
        assert response.status_code == 201, response.text
        assert response.json()["content"] == content
    stored = await api.messages(user, thread["thread_id"])
    assert [m["content"] for m in stored] == [{"role": "user", "content": "plain"}, parts]


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (42, "chat message"),
        (["hi"], "chat message"),
        (None, "chat message"),
        ({"role": "assistant", "content": "hi"}, "role: Input should be 'user'"),
        ({"content": "hi"}, "role"),
        ({"role": "user"}, "content"),
        ({"role": "user", "content": 5}, "content"),
        ({"role": "user", "content": []}, "content"),
        ({"role": "user", "content": [{"type": "audio", "audio": "x"}]}, "'audio'"),
        ({"role": "user", "content": [{"type": "text"}]}, "text"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, "url"),
        ({"role": "user", "content": "hi", "tool_calls": []}, "tool_calls"),
    ],
)
async def test_invalid_content_is_422_with_a_clear_message(
    client: httpx.AsyncClient, api: Api, user: TestUser, content: Any, hint: str
) -> None:
    thread = await api.thread(user)
    response = await client.post(
        f"/api/threads/{thread['thread_id']}/messages",
        json={"content": content},
        headers=user.headers,
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["detail"].startswith("content")
    assert hint in body["detail"]
    assert await api.messages(user, thread["thread_id"]) == []


async def test_missing_content_and_unknown_fields_are_422(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    thread = await api.thread(user)
    path = f"/api/threads/{thread['thread_id']}/messages"
    for body in (
        {},
        {"type": "user"},
        {"content": "hi", "metadata": {}},
        {"content": "hi", "is_llm_message": False},
    ):
        response = await client.post(path, json=body, headers=user.headers)
        assert response.status_code == 422, body
    assert await api.messages(user, thread["thread_id"]) == []


@pytest.mark.parametrize("message_type", ["assistant", "tool", "status", "summary"])
async def test_only_user_messages_come_from_clients(
    client: httpx.AsyncClient, api: Api, user: TestUser, message_type: str
) -> None:
    thread = await api.thread(user)
    response = await client.post(
        f"/api/threads/{thread['thread_id']}/messages",
        json={"content": {"role": "assistant", "content": "hi"}, "type": message_type},
        headers=user.headers,
    )
    assert response.status_code == 422
    assert "only 'user' messages" in response.json()["detail"]
    assert await api.messages(user, thread["thread_id"]) == []


async def test_unknown_type_is_422(client: httpx.AsyncClient, api: Api, user: TestUser) -> None:
    thread = await api.thread(user)
    response = await client.post(
        f"/api/threads/{thread['thread_id']}/messages",
        json={"content": "x", "type": "shout"},
        headers=user.headers,
    )
    assert response.status_code == 422
    assert "unknown message type" in response.json()["detail"]


async def test_huge_message_is_413_and_not_stored(
    client: httpx.AsyncClient, api: Api, user: TestUser, app: Any
) -> None:
    limit = app.state.settings.max_message_bytes
    thread = await api.thread(user)
    path = f"/api/threads/{thread['thread_id']}/messages"
    response = await client.post(path, json={"content": "x" * (limit + 1)}, headers=user.headers)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert str(limit) in response.json()["detail"]
    # Measured on the JSON of the stored content: multi-byte text counts in bytes.
    response = await client.post(path, json={"content": "é" * (limit // 2)}, headers=user.headers)
    assert response.status_code == 413
    assert await api.messages(user, thread["thread_id"]) == []
    # Just under the limit is fine.
    wrapper = len('{"role":"user","content":""}')
    ok = await client.post(path, json={"content": "y" * (limit - wrapper)}, headers=user.headers)
    assert ok.status_code == 201, ok.text


async def test_concurrent_posts_get_seq_1_to_20_without_gaps(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    thread = await api.thread(user)
    path = f"/api/threads/{thread['thread_id']}/messages"

    async def post(i: int) -> httpx.Response:
        return await client.post(path, json={"content": f"message {i}"}, headers=user.headers)

    responses = await asyncio.gather(*(post(i) for i in range(20)))
    assert [r.status_code for r in responses] == [201] * 20
    assert sorted(r.json()["seq"] for r in responses) == list(range(1, 21))
    history = await api.messages(user, thread["thread_id"])
    assert [m["seq"] for m in history] == list(range(1, 21))
    by_id = {r.json()["message_id"]: r.json()["seq"] for r in responses}
    assert [by_id[m["message_id"]] for m in history] == list(range(1, 21))


async def test_seq_is_per_thread(client: httpx.AsyncClient, api: Api, user: TestUser) -> None:
    first = await api.thread(user)
    second = await api.thread(user)
    await api.message(user, first["thread_id"], "a")
    await api.message(user, first["thread_id"], "b")
    assert (await api.message(user, second["thread_id"], "c"))["seq"] == 1
    assert (await api.message(user, first["thread_id"], "d"))["seq"] == 3


async def test_messages_paginate_oldest_first(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    thread = await api.thread(user)
    texts = [f"m{i}" for i in range(5)]
    for text in texts:
        await api.message(user, thread["thread_id"], text)
    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (
            await client.get(
                f"/api/threads/{thread['thread_id']}/messages", params=params, headers=user.headers
            )
        ).json()
        assert body["stream_cursor"] is None
        pages.append([m["content"]["content"] for m in body["messages"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10
    assert pages == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    # A message added after the last page shows up when continuing from that page's position.
    last = (
        await client.get(
            f"/api/threads/{thread['thread_id']}/messages",
            params={"limit": 4},
            headers=user.headers,
        )
    ).json()
    await api.message(user, thread["thread_id"], "m5")
    after = (
        await client.get(
            f"/api/threads/{thread['thread_id']}/messages",
            params={"cursor": last["next_cursor"]},
            headers=user.headers,
        )
    ).json()
    assert [m["content"]["content"] for m in after["messages"]] == ["m4", "m5"]


async def test_adding_a_message_moves_the_thread_updated_at(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    thread = await api.thread(user)
    await api.message(user, thread["thread_id"], "hi")
    after = (await client.get(f"/api/threads/{thread['thread_id']}", headers=user.headers)).json()
    assert datetime.fromisoformat(after["updated_at"]) > datetime.fromisoformat(
        thread["updated_at"]
    )
    assert after["created_at"] == thread["created_at"]
