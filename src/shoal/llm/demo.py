"""The ``shoal/demo`` model: offline, keyless, obviously a demo.

It lets a fresh install show the whole loop (streaming, native tool calls, tool results)
without any provider: asked to run a command or to write/read a file, it calls the matching
tool when the agent offers it, then summarises the result. It never pretends to be an LLM.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from shoal.llm.base import approx_text_tokens, approx_tokens, approx_usage
from shoal.llm.types import ChatRequest, Chunk, Finish, TextDelta, ToolCallDelta, Usage

DEMO_MODEL = "shoal/demo"
PREFIX = "[shoal demo model] "
_CHUNK = 6

_COMMAND_PATTERNS = (
    re.compile(r"\b(?:run|execute)\s+(?:the\s+command\s+)?`([^`]+)`", re.IGNORECASE),
    re.compile(r"\b(?:run|execute)\s*:\s*(.+)", re.IGNORECASE),
    re.compile(r"\bexecute\s+(?:the\s+command\s+)?(.+)", re.IGNORECASE),
    re.compile(r"\brun\s+the\s+command\s+(.+)", re.IGNORECASE),
)
_WRITE = re.compile(
    r"\b(?:write|create)\s+(?:a\s+|the\s+)?file\s+(?:named\s+|called\s+)?`?([\w./-]+)`?"
    r"(?:\s+(?:with(?:\s+the)?(?:\s+content)?|containing)\s*:?\s*(.*))?",
    re.IGNORECASE | re.DOTALL,
)
_READ = re.compile(
    r"\b(?:read|show|cat)\s+(?:the\s+)?(?:file\s+|contents\s+of\s+)`?([\w./-]+)`?", re.IGNORECASE
)


class DemoChatModel:
    """The offline demo ``ChatModel`` (no LiteLLM, no network)."""

    def __init__(self, *, chunk_delay: float = 0.0) -> None:
        self.chunk_delay = chunk_delay

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        tools = {_tool_name(t): t for t in request.tools or ()}
        messages = list(request.messages)
        call: tuple[str, dict[str, Any]] | None = None
        last = messages[-1] if messages else {}
        if last.get("role") == "tool" or "<tool_result" in _text(last):
            text = _summarise(last)
        else:
            text, call = _plan(_last_user_text(messages), tools)
        for start in range(0, len(text), _CHUNK):
            await asyncio.sleep(self.chunk_delay)
            yield TextDelta(text[start : start + _CHUNK])
        if call is not None:
            name, arguments = call
            yield ToolCallDelta(
                index=0,
                id=f"call_{uuid.uuid4().hex[:24]}",
                name=name,
                arguments=json.dumps(arguments),
            )
        yield Finish("tool_calls" if call else "stop")
        yield Usage(
            model=DEMO_MODEL,
            prompt_tokens=approx_tokens(messages),
            completion_tokens=approx_text_tokens(text),
            cost_usd=0.0,
        )

    def count_tokens(self, model: str, messages: Sequence[Mapping[str, Any]]) -> int:
        return approx_tokens(messages)

    def estimate_usage(
        self, model: str, messages: Sequence[Mapping[str, Any]], completion: str
    ) -> Usage:
        return approx_usage(model, messages, completion)

    def context_window(self, model: str) -> int:
        return 32_000


def _plan(
    user_text: str, tools: Mapping[str, Mapping[str, Any]]
) -> tuple[str, tuple[str, dict[str, Any]] | None]:
    intent = _intent(user_text)
    if intent is None:
        return _chat_answer(user_text), None
    name, values, label = intent
    schema = tools.get(name)
    if schema is None:
        return (
            f"{PREFIX}You asked me to {label}, but the `{name}` tool is not enabled for this "
            "agent, so I cannot do that.",
            None,
        )
    arguments = _fill(schema, values)
    return f"{PREFIX}Sure — I will {label} with the `{name}` tool.\n", (name, arguments)


def _intent(text: str) -> tuple[str, dict[str, str], str] | None:
    write = _WRITE.search(text)
    if write:
        path, content = write.group(1), (write.group(2) or "").strip().strip("`\"'")
        return "create_file", {"path": path, "content": content}, f"write the file {path}"
    read = _READ.search(text)
    if read:
        return "read_file", {"path": read.group(1)}, f"read the file {read.group(1)}"
    for pattern in _COMMAND_PATTERNS:
        match = pattern.search(text)
        if match:
            command = match.group(1).strip().splitlines()[0].strip().rstrip(".")
            if command:
                return "execute_command", {"command": command}, f"run `{command}`"
    return None


def _fill(schema: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """Map the intent's values onto the tool's own parameter names."""
    parameters = schema.get("function", schema).get("parameters", {})
    names = list((parameters.get("properties") or {}).keys())
    out: dict[str, Any] = {}
    for key, value in values.items():
        target = next((n for n in names if key in n.lower()), None)
        if target is None and key == "path":
            target = next((n for n in names if "file" in n.lower() or "name" in n.lower()), None)
        if target is None and key == "content":
            target = next((n for n in names if "text" in n.lower() or "data" in n.lower()), None)
        if target is None:
            required = [n for n in parameters.get("required", []) if n not in out]
            target = required[0] if required else key
        out[target] = value
    return out


def _summarise(message: Mapping[str, Any]) -> str:
    output = _text(message).strip()
    name = message.get("name") or "tool"
    if len(output) > 1500:
        output = output[:1500] + "\n…"
    return (
        f"{PREFIX}The `{name}` tool finished. Here is what it returned:\n\n"
        f"```\n{output}\n```\n\nThat is all a demo model can do — configure a real model "
        "(SHOAL_DEFAULT_MODEL and a provider key) for actual reasoning."
    )


def _chat_answer(user_text: str) -> str:
    quoted = " ".join(user_text.split())
    if len(quoted) > 200:
        quoted = quoted[:200] + "…"
    return (
        f"{PREFIX}I am an offline demo, not a real language model. You said: “{quoted}”. "
        "Ask me to run a command (run `ls`), to write a file (write file hello.txt with hi) "
        "or to read one (read file hello.txt) to see tool calls in action."
    )


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message)
    return ""


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def _tool_name(schema: Mapping[str, Any]) -> str:
    return str(schema.get("function", schema).get("name", ""))
