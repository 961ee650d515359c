"""The HTTP side of `shoal chat`: a small client of shoal's public API and its run streams
(resumed with ``Last-Event-ID`` after a dropped connection)."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from shoal import __version__
from shoal.streaming.sse import SSEParser

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"completed", "failed", "stopped"})
MAX_RECONNECTS = 8


class ChatError(Exception):
    """A problem shown to the user as one line; ``exit_code`` ends a non-interactive chat."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass
class ChatConfig:
    url: str = DEFAULT_URL
    api_key: str | None = None
    email: str | None = None
    password: str | None = None
    thread_id: str | None = None
    model: str | None = None
    json_output: bool = False


@dataclass
class RunOutcome:
    run_id: str
    status: str
    finish_reason: str | None = None
    error: dict[str, Any] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# -- HTTP ------------------------------------------------------------------------------------------


def describe_response(response: httpx.Response) -> str:
    """One line for an error answer: the server's ``detail`` (or GoTrue's ``msg``) and code."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    detail = str(body.get("detail") or body.get("msg") or response.reason_phrase or "error")
    code = str(body.get("code") or body.get("error_code") or "")
    status = response.status_code
    if status == 401:
        return f"the server refused the credentials (401 {code or 'unauthorized'}): {detail}"
    if status in (429, 503) and response.headers.get("retry-after"):
        detail += f" (retry after {response.headers['retry-after']} s)"
    return f"{status} {code}: {detail}" if code else f"{status}: {detail}"


class ShoalClient:
    """The few API calls a chat needs, with clear errors and SSE resume."""

    def __init__(
        self,
        url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        read_timeout: float = 45.0,
        retry_delay: float = 0.5,
    ) -> None:
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ChatError(f"--url must start with http:// or https:// (got {url!r})", 2)
        self.url = url
        self.read_timeout = read_timeout  # > the server's 15 s keep-alive ping
        self.retry_delay = retry_delay
        self._credentials: tuple[str, str] | None = None
        self.http = httpx.Client(
            base_url=url,
            transport=transport,
            timeout=httpx.Timeout(30.0, connect=10.0),
            headers={"User-Agent": f"shoal-chat/{__version__}"},
        )

    def close(self) -> None:
        self.http.close()

    def _unreachable(self, exc: httpx.TransportError) -> ChatError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ChatError(
                f"cannot connect to {self.url}: is `shoal serve` running at {self.url}?"
            )
        return ChatError(f"the connection to {self.url} failed: {type(exc).__name__} {exc}".strip())

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(2):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None
            if response.status_code == 401 and self._credentials and attempt == 0:
                self.sign_in(*self._credentials)  # the access token expired: sign in again
                continue
            if response.status_code >= 400:
                raise ChatError(describe_response(response))
            return response
        raise AssertionError("unreachable")

    def use_api_key(self, api_key: str) -> None:
        self.http.headers["Authorization"] = f"Bearer {api_key}"

    def sign_in(self, email: str, password: str) -> None:
        try:
            response = self.http.post(
                "/auth/v1/token",
                params={"grant_type": "password"},
                json={"email": email, "password": password},
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise ChatError(f"sign-in failed: {describe_response(response)}")
        self._credentials = (email, password)
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def thread(self, thread_id: str) -> dict[str, Any]:
        try:
            return dict(self.request("GET", f"/api/threads/{thread_id}").json())
        except ChatError as exc:
            if exc.message.startswith("404"):
                raise ChatError(f"thread {thread_id} not found (or not yours)") from None
            raise

    def create_thread(self, name: str) -> dict[str, Any]:
        return dict(self.request("POST", "/api/threads", json={"name": name}).json())

    def start_run(self, thread_id: str, prompt: str, model: str | None) -> str:
        body: dict[str, Any] = {"prompt": prompt}
        if model:
            body["model_name"] = model
        response = self.request("POST", f"/api/threads/{thread_id}/agent/start", json=body)
        return str(response.json()["agent_run_id"])

    def stop_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/agent-run/{run_id}/stop").json())

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/agent-run/{run_id}").json())

    def events(
        self, run_id: str, *, after: int = 0, on_reconnect: Any = None
    ) -> Generator[dict[str, Any], None, None]:
        """The run's events after ``after`` until its terminal ``run_status``, reconnecting
        with ``Last-Event-ID`` when the connection drops (each event once, in order)."""
        cursor = _Cursor(after)
        while True:
            try:
                if (yield from self._connection(run_id, cursor)):
                    return
                problem = "the stream ended early"
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.ConnectError) and cursor.failures >= MAX_RECONNECTS:
                    raise self._unreachable(exc) from None
                problem = type(exc).__name__
            cursor.failures += 1
            if cursor.failures > MAX_RECONNECTS:
                raise ChatError(f"lost the stream of run {run_id} ({problem}); gave up retrying")
            if on_reconnect is not None:
                on_reconnect(problem, cursor.last)
            time.sleep(min(self.retry_delay * 2 ** (cursor.failures - 1), 5.0))

    def _connection(self, run_id: str, cursor: _Cursor) -> Generator[dict[str, Any], None, bool]:
        """One connection's new events; returns whether the run's stream is complete."""
        headers = {"Last-Event-ID": str(cursor.last)} if cursor.last else {}
        timeout = httpx.Timeout(30.0, connect=10.0, read=self.read_timeout)
        path = f"/api/agent-run/{run_id}/stream"
        with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if response.status_code == 204:
                return True  # nothing after the cursor: the run had already finished
            if response.status_code >= 400:
                response.read()
                raise ChatError(describe_response(response))
            parser = SSEParser()
            for chunk in response.iter_bytes():
                for sse in parser.feed(chunk):
                    event = sse.data
                    if not isinstance(event, dict):
                        continue
                    seq = event.get("seq")
                    if isinstance(seq, int):
                        if seq <= cursor.last:
                            continue
                        cursor.last = seq
                    cursor.failures = 0
                    yield event
                    if is_terminal(event):
                        return True
        return False


@dataclass
class _Cursor:
    last: int
    failures: int = 0


def is_terminal(event: dict[str, Any]) -> bool:
    data = event.get("data") or {}
    return event.get("type") == "run_status" and data.get("status") in TERMINAL


# -- rendering -------------------------------------------------------------------------------------
