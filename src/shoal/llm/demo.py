"""The ``shoal/demo`` model: offline, keyless, obviously a demo.

It lets a fresh install show the whole loop (streaming, native tool calls, tool results)
without any provider: asked to run a command, to write/read a file, to look at an image or to
"write a python script that prints hello and run it", it calls the matching sandbox tools when
the agent offers them, then reports their results. It never pretends to be an LLM.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
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
_SCRIPT = re.compile(
    r"\b(?:write|create|make)\s+(?:a\s+|an\s+)?(python|bash|shell|node|javascript)\s+"
    r"(?:script|program)\s+(?:that|which|to)\s+(?:prints?|outputs?|says?)\s+(.+?)"
    r"(?:,?\s+(?:and|then)\s+(run|execute)s?\s+it\b.*)?$",
    re.IGNORECASE | re.DOTALL,
)
_IMAGE = re.compile(
    r"\b(?:see|look\s+at|show|view)\s+(?:me\s+)?(?:the\s+)?(?:image|picture|screenshot)\s+"
    r"`?([\w./-]+)`?",
    re.IGNORECASE,
)
_IMAGE_NOTE = "Image from see_image:"
_LANGUAGES = {  # language: (extension, runner)
    "python": ("py", "python3"),
    "bash": ("sh", "bash"),
    "shell": ("sh", "bash"),
    "node": ("js", "node"),
    "javascript": ("js", "node"),
}
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
        calls: list[tuple[str, dict[str, Any]]] = []
        results = _latest_results(messages)
        if results:
            text = _summarise(results)
        else:
            text, calls = _plan(_last_user_text(messages), tools)
        for start in range(0, len(text), _CHUNK):
            await asyncio.sleep(self.chunk_delay)
            yield TextDelta(text[start : start + _CHUNK])
        for index, (name, arguments) in enumerate(calls):
            yield ToolCallDelta(
                index=index,
                id=f"call_{uuid.uuid4().hex[:24]}",
                name=name,
                arguments=json.dumps(arguments),
            )
        yield Finish("tool_calls" if calls else "stop")
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


Call = tuple[str, dict[str, Any]]
Intent = tuple[str, dict[str, str], str]


def _plan(user_text: str, tools: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[Call]]:
    intents = _intents(user_text)
    if not intents:
        return _chat_answer(user_text), []
    first, _, first_label = intents[0]
    if first not in tools:
        return (
            f"{PREFIX}You asked me to {first_label}, but the `{first}` tool is not enabled for "
            "this agent, so I cannot do that.",
            [],
        )
    missing = [(name, label) for name, _, label in intents if name not in tools]
    calls = [(name, _fill(tools[name], values)) for name, values, _ in intents if name in tools]
    planned = [(name, label) for name, _, label in intents if name in tools]
    steps = " and then ".join(f"{label} with the `{name}` tool" for name, label in planned)
    text = f"{PREFIX}Sure — I will {steps}."
    for name, label in missing:
        text += f" (The `{name}` tool is not enabled, so I cannot {label}.)"
    return text + "\n", calls


def _intents(text: str) -> list[Intent]:
    script = _SCRIPT.search(text)
    if script:
        return _script_intents(script)
    write = _WRITE.search(text)
    if write:
        path, content = write.group(1), (write.group(2) or "").strip().strip("`\"'")
        return [("create_file", {"path": path, "content": content}, f"write the file {path}")]
    image = _IMAGE.search(text)
    if image:
        return [("see_image", {"path": image.group(1)}, f"look at the image {image.group(1)}")]
    read = _READ.search(text)
    if read:
        return [("read_file", {"path": read.group(1)}, f"read the file {read.group(1)}")]
    for pattern in _COMMAND_PATTERNS:
        match = pattern.search(text)
        if match:
            command = match.group(1).strip().splitlines()[0].strip().rstrip(".")
            if command:
                return [("execute_command", {"command": command}, f"run `{command}`")]
    return []


def _script_intents(match: re.Match[str]) -> list[Intent]:
    """Turn "write a python script that prints hello and run it" into create_file (plus
    execute_command when asked to run it)."""
    language = match.group(1).lower()
    words = match.group(2).strip().rstrip(".!").strip()
    quoted = len(words) > 1 and words[0] in "\"'`" and words[-1] == words[0]
    message = words[1:-1] if quoted else words
    extension, runner = _LANGUAGES[language]
    stem = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:24] or "script"
    path = f"{stem}.{extension}"
    if extension == "py":
        source = f"print({message!r})\n"
    elif extension == "sh":
        source = f"#!/usr/bin/env bash\necho {shlex.quote(message)}\n"
    else:
        source = f"console.log({json.dumps(message)});\n"
    intents: list[Intent] = [
        ("create_file", {"path": path, "content": source}, f"write the {language} script {path}")
    ]
    if match.group(3):
        command = f"{runner} {path}"
        intents.append(("execute_command", {"command": command}, f"run `{command}`"))
    return intents


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


def _latest_results(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The tool results at the end of the prompt (native ``tool`` messages or an XML
    ``<tool_result>`` user message), skipping the image messages that follow ``see_image``."""
    results: list[Mapping[str, Any]] = []
    for message in reversed(messages):
        text = _text(message)
        if message.get("role") == "tool" or (
            message.get("role") == "user" and "<tool_result" in text
        ):
            results.append(message)
        elif message.get("role") == "user" and text.startswith(_IMAGE_NOTE) and not results:
            continue
        else:
            break
    return list(reversed(results))


def _summarise(results: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for message in results:
        output = _text(message).strip()
        name = message.get("name") or "tool"
        if len(output) > 1500:
            output = output[:1500] + "\n…"
        parts.append(f"The `{name}` tool finished. Here is what it returned:\n\n```\n{output}\n```")
    return (
        PREFIX + "\n\n".join(parts) + "\n\nThat is all a demo model can do — configure a real "
        "model (SHOAL_DEFAULT_MODEL and a provider key) for actual reasoning."
    )


def _chat_answer(user_text: str) -> str:
    quoted = " ".join(user_text.split())
    if len(quoted) > 200:
        quoted = quoted[:200] + "…"
    return (
        f"{PREFIX}I am an offline demo, not a real language model. You said: “{quoted}”. "
        "Ask me to run a command (run `ls`), to write a file (write file hello.txt with hi), "
        "to read one (read file hello.txt) or to write a python script that prints hello and "
        "run it, to see tool calls in action."
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
