"""Rendering and request checks of the fake OpenAI-compatible server (see ``fake_server``)."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.llm.fake_server import FakeTurn


def check_tool_ordering(messages: object) -> str | None:
    """What a real provider would reject about tool messages, or ``None`` when acceptable.

    Every ``role: tool`` message must directly follow (possibly after other tool messages) an
    assistant message whose ``tool_calls`` hold its ``tool_call_id``, and every such tool call
    must get its result before the next non-tool message.
    """
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    pending: set[str] = set()
    open_ids: set[str] = set()
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            return f"messages[{position}] is not a chat message"
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_ids:
                return (
                    f"messages[{position}]: messages with role 'tool' must be a response to a "
                    f"preceding message with 'tool_calls' (tool_call_id {call_id!r})"
                )
            pending.discard(str(call_id))
            continue
        if pending:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'. Missing: {sorted(pending)}"
            )
        open_ids = set()
        if role == "assistant":
            ids = {str(c.get("id")) for c in message.get("tool_calls") or [] if isinstance(c, dict)}
            open_ids, pending = set(ids), set(ids)
    if pending:
        return f"tool calls without results at the end of the conversation: {sorted(pending)}"
    return None


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def _split(text: str, parts: int) -> list[str]:
    parts = max(1, min(parts, len(text) or 1))
    size = -(-len(text) // parts) if text else 1
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _usage(turn: FakeTurn) -> dict[str, int]:
    if turn.usage is not None:
        prompt, completion = turn.usage
    else:
        text = "".join(turn.text_chunks()) + "".join(c.arguments_text() for c in turn.tool_calls)
        prompt, completion = 10, max(1, len(text) // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish(turn: FakeTurn) -> str:
    return turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")


def _call_id(turn: FakeTurn, index: int) -> str:
    call = turn.tool_calls[index]
    if not call.id:
        call.id = f"call_fake_{uuid.uuid4().hex[:16]}"
    return call.id


def render_turn_chunks(turn: FakeTurn, model: str, *, include_usage: bool) -> list[bytes]:
    """The SSE byte chunks of one streamed turn, ending with ``data: [DONE]``."""
    deltas: list[dict[str, Any]] = []
    if turn.reasoning:
        for piece in _split(turn.reasoning, max(1, len(turn.reasoning) // 8)):
            deltas.append({"reasoning_content": piece})
    deltas += [{"content": piece} for piece in turn.text_chunks() if piece]
    if not deltas:
        deltas.append({"content": ""})
    deltas[0] = {"role": "assistant", **deltas[0]}  # the first chunk carries content already
    out = [_sse(_chunk(model, delta)) for delta in deltas]
    for index, call in enumerate(turn.tool_calls):
        fragments = _split(call.arguments_text(), call.fragments)
        first = {
            "index": index,
            "id": _call_id(turn, index),
            "type": "function",
            "function": {"name": call.name, "arguments": fragments[0]},
        }
        out.append(_sse(_chunk(model, {"tool_calls": [first]})))
        for fragment in fragments[1:]:
            delta = {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
            out.append(_sse(_chunk(model, delta)))
    out.append(_sse(_chunk(model, {}, _finish(turn))))
    if include_usage and turn.include_usage:
        final = _chunk(model, {})
        final["choices"] = []
        final["usage"] = _usage(turn)
        out.append(_sse(final))
    out.append(_sse("[DONE]"))
    return out


def render_turn_json(turn: FakeTurn, model: str) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` body of one turn."""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(turn.text_chunks())}
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(turn, index),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_text()},
            }
            for index, call in enumerate(turn.tool_calls)
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(turn)}],
        "usage": _usage(turn),
    }
