"""`shoal chat`: a terminal client for a running shoal, over its public HTTP API.

It creates (or reuses) a thread, starts runs, and renders each run's SSE stream as it arrives
(DESIGN.md §3): assistant text, tool calls and results, errors, status changes, and a final line
with status, finish reason and usage. A dropped connection resumes with ``Last-Event-ID``, so no
event is shown twice or lost. Ctrl-C stops the run (``POST /api/agent-run/{id}/stop``) and still
shows how it ended; a second Ctrl-C quits.

Output: on a terminal everything goes through rich; otherwise the answer text alone goes to
stdout (so ``echo hi | shoal chat > answer.txt`` captures just the answer) and everything else to
stderr. ``--json`` prints each event as one JSON line instead.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import IO, Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.prompt import Prompt
from rich.status import Status

from shoal import __version__
from shoal.streaming.sse import SSEParser

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"completed", "failed", "stopped"})
MAX_RECONNECTS = 8
EXIT_COMMANDS = frozenset({"/exit", "/quit"})
EXIT_INTERRUPTED = 130


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


def short(value: Any, limit: int = 80) -> str:
    """A one-line preview of tool arguments or output."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in value.items())
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class View:
    """Renders events. ``out`` gets the answer text; ``err`` (a rich console) the rest."""

    def __init__(self, out: IO[str], err: Console, *, json_output: bool, rich: bool) -> None:
        self.out = out
        self.err = err
        self.json_output = json_output
        self.rich = rich  # out and err are the same terminal
        self._out_mid = False  # the last thing written to `out` did not end a line
        self._err_mid = False  # the same for `err` (only differs from _out_mid when not rich)
        self._message_id: str | None = None
        self._spinner: Status | None = None
        self.usage: dict[str, int | float] = {}

    def _write(self, text: str, style: str | None = None) -> None:
        """Answer text: on `out`, or styled on the terminal."""
        self._quiet()
        if self.rich and style:
            self.err.print(text, style=style, end="", markup=False, highlight=False)
        else:
            self.out.write(text)
        self.err.file.flush()
        self.out.flush()
        self._out_mid = not text.endswith("\n")
        if self.rich:
            self._err_mid = self._out_mid

    def _write_err(self, text: str, style: str) -> None:
        """Raw tool output on `err`."""
        self._quiet()
        self.err.print(text, style=style, end="", markup=False, highlight=False)
        self.err.file.flush()
        self._err_mid = not text.endswith("\n")
        if self.rich:
            self._out_mid = self._err_mid

    def note(self, markup: str) -> None:
        """A line about the run (tool calls, errors, statuses) on `err`, on a line of its own."""
        self._quiet()
        if self._err_mid:
            self.err.print()
            self._err_mid = False
            if self.rich:
                self._out_mid = False
        self.err.print(markup, highlight=False)

    def end_line(self) -> None:
        self._quiet()
        if self._out_mid:
            self.out.write("\n")
            self.out.flush()
            self._out_mid = False
            if self.rich:
                self._err_mid = False
        if self._err_mid:
            self.err.print()
            self._err_mid = False

    def waiting(self, label: str) -> None:
        """A spinner while nothing streams (terminal only)."""
        if not self.rich or self._out_mid:
            return
        if self._spinner is None:
            self._spinner = self.err.status(label, spinner="dots")
            self._spinner.start()
        else:
            self._spinner.update(label)

    def _quiet(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None

    def event(self, event: dict[str, Any]) -> None:
        if self.json_output:
            self.out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
            self.out.flush()
            return
        kind, data = str(event.get("type")), event.get("data") or {}
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(data)

    def _on_text_delta(self, data: dict[str, Any]) -> None:
        message_id = data.get("message_id")
        if self._message_id is not None and message_id != self._message_id and self._out_mid:
            self._write("\n\n")
        self._message_id = message_id
        self._write(str(data.get("text", "")))

    def _on_reasoning_delta(self, data: dict[str, Any]) -> None:
        if self.rich:
            self._write(str(data.get("text", "")), style="dim italic")

    def _on_tool_call(self, data: dict[str, Any]) -> None:
        args = escape(short(data.get("arguments", {})))
        self.note(f"[cyan]⚙ {escape(str(data.get('name')))}[/]([dim]{args}[/])")

    def _on_tool_started(self, data: dict[str, Any]) -> None:
        self.waiting(f"running {data.get('name')}…")

    def _on_tool_output_delta(self, data: dict[str, Any]) -> None:
        style = "red" if data.get("stream") == "stderr" else "dim"
        self._write_err(str(data.get("text", "")), style)

    def _on_tool_result(self, data: dict[str, Any]) -> None:
        mark = "[green]✓[/]" if data.get("success") else "[red]✗[/]"
        took = f" [dim]({data.get('duration_ms')} ms)[/]" if data.get("duration_ms") else ""
        output = escape(short(data.get("output", ""), 100))
        self.note(f"{mark} {escape(str(data.get('name')))}{took} [dim]{output}[/]")
        self.waiting("thinking…")

    def _on_error(self, data: dict[str, Any]) -> None:
        self.note(
            f"[yellow]! {escape(str(data.get('code')))}: {escape(str(data.get('message')))}[/]"
        )

    def _on_usage(self, data: dict[str, Any]) -> None:
        for key in ("prompt_tokens", "completion_tokens", "cost_usd"):
            self.usage[key] = self.usage.get(key, 0) + (data.get(key) or 0)

    def _on_run_status(self, data: dict[str, Any]) -> None:
        status = str(data.get("status"))
        if status in TERMINAL:
            return  # the final line says it
        if self.rich and not self._out_mid:
            self.waiting(f"{status}…")
        else:
            self.note(f"[dim]· {escape(status)}[/]")

    def finished(self, outcome: RunOutcome) -> None:
        self.end_line()
        if self.json_output:
            return
        color = {"completed": "green", "failed": "red", "stopped": "yellow"}.get(
            outcome.status, "white"
        )
        parts = [f"[bold {color}]{outcome.status}[/]"]
        if outcome.finish_reason:
            parts.append(escape(outcome.finish_reason))
        if outcome.error:
            code, message = outcome.error.get("code"), outcome.error.get("message")
            parts.append(f"[red]{escape(str(code))}: {escape(str(message))}[/]")
        usage = outcome.usage or self.usage
        if usage:
            tokens = f"{usage.get('prompt_tokens', 0)} in / {usage.get('completion_tokens', 0)}"
            parts.append(f"{tokens} out tokens")
            if usage.get("cost_usd"):
                parts.append(f"${float(usage['cost_usd']):.6f}")
        parts.append(f"{outcome.seconds:.1f} s")
        self.err.print("[dim]──[/] " + " [dim]·[/] ".join(parts), highlight=False)


# -- the chat --------------------------------------------------------------------------------------


class Chat:
    def __init__(self, client: ShoalClient, config: ChatConfig, view: View) -> None:
        self.client = client
        self.config = config
        self.view = view
        self.thread_id = config.thread_id

    def ensure_thread(self, prompt: str) -> str:
        if self.thread_id is None:
            name = " ".join(prompt.split())[:60] or "chat"
            self.thread_id = str(self.client.create_thread(name)["thread_id"])
            self.view.note(
                f"[dim]thread {self.thread_id} — continue it with "
                f"`shoal chat --thread {self.thread_id}`[/]"
            )
        return self.thread_id

    def ask(self, prompt: str) -> RunOutcome:
        thread_id = self.ensure_thread(prompt)
        started = time.monotonic()
        run_id = self.client.start_run(thread_id, prompt, self.config.model)
        self.view.waiting("queued…")
        return self.follow(run_id, started=started)

    def follow(self, run_id: str, *, started: float) -> RunOutcome:
        """Render the run's stream to its end; the first Ctrl-C stops the run, a second one
        propagates (quit)."""
        last, stop_sent, final = 0, False, None
        while True:
            try:
                with contextlib.closing(
                    self.client.events(run_id, after=last, on_reconnect=self._reconnecting)
                ) as stream:
                    for event in stream:
                        last = event.get("seq", last)
                        self.view.event(event)
                        if is_terminal(event):
                            final = event["data"]
                break
            except KeyboardInterrupt:
                if stop_sent:
                    raise
                stop_sent = True
                self.view.note("[yellow]stopping the run… (Ctrl-C again to quit)[/]")
                self.client.stop_run(run_id)
        return self._outcome(run_id, final, time.monotonic() - started)

    def _outcome(self, run_id: str, final: dict[str, Any] | None, seconds: float) -> RunOutcome:
        try:
            run = self.client.run(run_id)
        except ChatError:
            run = dict(final or {"status": "failed"})
        outcome = RunOutcome(
            run_id=run_id,
            status=str(run.get("status")),
            finish_reason=run.get("finish_reason"),
            error=run.get("error"),
            usage=dict(run.get("usage") or {}),
            seconds=seconds,
        )
        self.view.finished(outcome)
        return outcome

    def _reconnecting(self, problem: str, last: int) -> None:
        self.view.note(
            f"[dim]connection lost ({escape(problem)}) — resuming after event {last}…[/]"
        )


def _ask(label: str, stdin: IO[str], err: Console, *, password: bool = False) -> str:
    """A prompted line. On the real terminal rich's Prompt (line editing, hidden passwords);
    from another stream a plain readline. EOF raises EOFError."""
    if stdin is sys.stdin or password:
        return Prompt.ask(label, console=err, password=password)
    err.print(f"{label}: ", end="")
    line = stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def _authenticate(client: ShoalClient, config: ChatConfig, stdin: IO[str], err: Console) -> None:
    if config.api_key:
        client.use_api_key(config.api_key)
        return
    email, password = config.email, config.password
    can_prompt = stdin.isatty()
    if not (email or password) and not can_prompt:
        raise ChatError(
            "no credentials: pass --api-key (or set SHOAL_API_KEY), or --email and --password", 2
        )
    try:
        if not email:
            if not can_prompt:
                raise ChatError("--email is needed to sign in (stdin is not a terminal)", 2)
            email = _ask("Email", stdin, err).strip()
        if not password:
            if not can_prompt:
                raise ChatError("--password is needed to sign in (stdin is not a terminal)", 2)
            password = _ask("Password", stdin, err, password=True)
    except EOFError:
        raise ChatError("sign-in cancelled", 2) from None
    client.sign_in(email, password)


def _repl(chat: Chat, stdin: IO[str], err: Console) -> int:
    err.print("[dim]Type a message; /exit or Ctrl-D quits. Ctrl-C stops a running answer.[/]")
    while True:
        try:
            prompt = _ask("\n[bold cyan]you[/]", stdin, err)
        except EOFError:
            err.print()
            return 0
        if prompt.strip() in EXIT_COMMANDS:
            return 0
        if not prompt.strip():
            continue
        err.print()
        try:
            chat.ask(prompt)
        except ChatError as exc:
            chat.view.end_line()
            err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)


def run_chat(
    config: ChatConfig,
    prompt: str | None = None,
    *,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """The whole command; returns the exit code (0 completed, 1 failed/stopped or an error,
    2 bad usage, 130 quit with Ctrl-C)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    rich = stdout.isatty() and not config.json_output
    err = Console(file=stdout if rich else stderr, highlight=False, soft_wrap=True)
    view = View(stdout, err, json_output=config.json_output, rich=rich)
    interactive = prompt is None and stdin.isatty()
    client: ShoalClient | None = None
    try:
        if prompt is None and not interactive:
            prompt = stdin.read()
            if not prompt.strip():
                raise ChatError("nothing to send: the prompt (from stdin) is empty", 2)
        client = ShoalClient(config.url, transport=transport)
        _authenticate(client, config, stdin, err)
        chat = Chat(client, config, view)
        if config.thread_id:
            client.thread(config.thread_id)
        if interactive:
            return _repl(chat, stdin, err)
        assert prompt is not None
        outcome = chat.ask(prompt)
        return 0 if outcome.status == "completed" else 1
    except ChatError as exc:
        view.end_line()
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        view.end_line()
        err.print("[dim]interrupted[/]")
        return EXIT_INTERRUPTED
    finally:
        if client is not None:
            client.close()
