"""Log hygiene: no token, API key or ``?token=`` value is ever written — not by our access
log, not by uvicorn's — and every line carries its context (request_id; run ids for runs)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.conftest import TestUser
from tests.observability.conftest import JsonLogs, served
from tests.runs.conftest import new_thread, start_run, wait_run


async def test_a_stream_opened_with_token_in_the_url_logs_no_token(
    app: FastAPI, user: TestUser, json_logs: JsonLogs
) -> None:
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        thread_id, _ = await new_thread(http, user)
        run_id = await start_run(http, user, thread_id, "hi")
        run = await wait_run(http, user, run_id)
        assert run["status"] == "completed"
        stream = await http.get(
            f"/api/agent-run/{run_id}/stream",
            params={"token": user.token},
            headers={"X-Request-ID": "req-stream-1"},
        )
        assert stream.status_code == 200
        assert "run_status" in stream.text  # the token authenticated the stream
    text, lines = json_logs()
    assert user.token not in text
    assert user.token.split(".")[2] not in text  # not even the signature part
    # the stream's request was logged, with the token value redacted and its request id
    (entry,) = [e for e in lines if e.get("event") == "request" and "/stream" in e["path"]]
    assert entry["path"] == f"/api/agent-run/{run_id}/stream?token=[redacted]"
    assert entry["request_id"] == "req-stream-1"
    assert entry["status"] == 200
    requests = [e for e in lines if e.get("event") == "request"]
    assert len(requests) >= 4 and all(e.get("request_id") for e in requests)
    # the run's own lines carry its ids (and not the id of the request that started it)
    (finished,) = [e for e in lines if e.get("event") == "run_finished"]
    assert finished["run_id"] == run_id
    assert finished["thread_id"] == thread_id
    assert finished["account_id"] == str(user.account_id)
    assert finished["attempt"] == 1
    assert "request_id" not in finished


async def test_api_keys_in_headers_and_urls_are_never_logged(
    app: FastAPI, user: TestUser, json_logs: JsonLogs
) -> None:
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        created = await http.post("/api/api-keys", json={"name": "ci"}, headers=user.headers)
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        assert secret.startswith("shoal_sk_")
        bearer = await http.get("/api/threads", headers={"Authorization": f"Bearer {secret}"})
        header = await http.get("/api/threads", headers={"X-API-Key": secret})
        assert bearer.status_code == header.status_code == 200
        wrong = secret[:-4] + "abcd"
        refused = await http.get("/api/threads", headers={"X-API-Key": wrong})
        assert refused.status_code == 401
        in_url = await http.get(f"/api/threads/{'0' * 8}/stream", params={"token": secret})
        assert in_url.status_code in (400, 401, 404, 422)
    text, lines = json_logs()
    for value in (secret, wrong, secret.removeprefix("shoal_sk_"), user.token):
        assert value not in text
    requests = [e for e in lines if e.get("event") == "request"]
    assert [e["status"] for e in requests if e["path"] == "/api/threads"] == [200, 200, 401]
    assert all(e.get("request_id") for e in requests)
