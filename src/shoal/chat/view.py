"""How `shoal chat` shows a run: rich on a terminal; otherwise the answer text on stdout and
everything else on stderr, or one JSON line per event with ``--json``."""

from __future__ import annotations

import json
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from shoal.chat.client import TERMINAL, RunOutcome


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
