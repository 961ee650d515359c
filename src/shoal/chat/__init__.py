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
import sys
import time
from typing import IO, Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.prompt import Prompt

from shoal.chat.client import (
    DEFAULT_URL,
    ChatConfig,
    ChatError,
    RunOutcome,
    ShoalClient,
    describe_response,
    is_terminal,
)
from shoal.chat.view import View

EXIT_COMMANDS = frozenset({"/exit", "/quit"})
EXIT_INTERRUPTED = 130

__all__ = [
    "DEFAULT_URL",
    "Chat",
    "ChatConfig",
    "ChatError",
    "RunOutcome",
    "ShoalClient",
    "describe_response",
    "run_chat",
]


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
