"""Small API helpers for the project/thread/message tests (everything goes through the client)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import TestUser


class Api:
    """Create-and-assert helpers bound to the test client."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def project(
        self, who: TestUser, headers: dict[str, str] | None = None, **body: Any
    ) -> dict[str, Any]:
        body.setdefault("name", "Project")
        response = await self.client.post(
            "/api/projects", json=body, headers={**who.headers, **(headers or {})}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def thread(
        self, who: TestUser, headers: dict[str, str] | None = None, **body: Any
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/api/threads", json=body, headers={**who.headers, **(headers or {})}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def message(self, who: TestUser, thread_id: str, content: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/threads/{thread_id}/messages", json={"content": content}, headers=who.headers
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def messages(self, who: TestUser | None, thread_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/api/threads/{thread_id}/messages", headers=who.headers if who else {}
        )
        assert response.status_code == 200, response.text
        return list(response.json()["messages"])


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)
