"""From stored messages to the provider prompt (DESIGN §5, tool-call identity).

- Native tool results go back as ``role: tool`` right after the assistant message whose
  ``tool_calls`` made them, one per call id (a call without a stored result — e.g. a run
  stopped mid-tool — gets a short "interrupted" result, since providers reject the gap).
- XML tool results go back as ONE ``role: user`` message of ``<tool_result>`` blocks.
- The newest summaries replace the messages they summarised, at the position of the first.
- Long tool outputs are clipped with a marker naming the message id for ``expand_message``.
- Extended-thinking blocks stored in an assistant's metadata are sent back verbatim.
- A ``see_image`` result (``metadata.image``) is followed, after the turn's tool results, by a
  user message naming the image; on the call right after the tool ran (its payload is in
  ``images``) that message also carries the image as an ``image_url`` part.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shoal.engine.ports import StoredMessage
from shoal.tools.registry import clip_text

INTERRUPTED_RESULT = "[no result: the tool call was interrupted before it finished]"
EXPAND_TOOL = "expand_message"
IMAGE_TEXT = "Image from see_image: {path}"
IMAGE_GONE_NOTE = " (shown earlier; call see_image again to look at it again)"

Images = Mapping[str, Mapping[str, str]]
"""Image payloads ``{"mime_type", "data"}`` (base64) by tool call id."""


def visible_messages(stored: Sequence[StoredMessage]) -> list[StoredMessage]:
    """Stored messages as the model should see them: summaries replace what they cover.

    An active summary (one no newer summary covers) takes the place of the first message it
    summarises (following older summaries down to an original message) — or its own place
    when that message is gone.
    """
    by_id = {str(m.get("message_id")): m for m in stored}
    summarised = {str(i) for m in stored for i in _summarised_ids(m)}
    anchors: dict[str, StoredMessage] = {}
    for message in stored:
        if message.get("type") == "summary" and str(message["message_id"]) not in summarised:
            anchor = _anchor(message, by_id)
            if anchor is not None:
                anchors.setdefault(anchor, message)
    placed = {str(m["message_id"]) for m in anchors.values()}
    out: list[StoredMessage] = []
    for message in stored:
        message_id = str(message.get("message_id"))
        if message_id in anchors:
            out.append(anchors[message_id])
        if message_id not in summarised and message_id not in placed:
            out.append(message)
    return out


def _anchor(summary: StoredMessage, by_id: dict[str, StoredMessage]) -> str | None:
    current = summary
    for _ in range(100):  # summaries of summaries; bounded against bad metadata
        ids = _summarised_ids(current)
        if not ids or str(ids[0]) not in by_id:
            return None
        current = by_id[str(ids[0])]
        if current.get("type") != "summary":
            return str(current["message_id"])
    return None


def _summarised_ids(message: StoredMessage) -> list[object]:
    ids = (message.get("metadata") or {}).get("summarized_message_ids") or []
    return list(ids) if isinstance(ids, list) else []


def build_prompt(
    system_prompt: str,
    stored: Sequence[StoredMessage],
    *,
    clip_chars: int | None = None,
    images: Images | None = None,
) -> list[dict[str, Any]]:
    """The chat messages for a model call: system prompt, then the visible history.

    ``images`` are the payloads of ``see_image`` calls to attach to this prompt.
    """
    images = images or {}
    prompt: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
    messages = visible_messages(stored)
    index = 0
    while index < len(messages):
        message = messages[index]
        index += 1
        if message.get("type") == "tool":
            # a tool message not preceded by its assistant (e.g. after a summary cut)
            prompt.append(_xml_results([message], clip_chars))
            prompt.extend(_image_messages([message], images))
            continue
        if message.get("type") != "assistant":
            prompt.append(_plain(message))
            continue
        results: list[StoredMessage] = []
        while index < len(messages) and messages[index].get("type") == "tool":
            results.append(messages[index])
            index += 1
        prompt.extend(_assistant_turn(message, results, clip_chars))
        prompt.extend(_image_messages(results, images))
    return prompt


def _image_messages(results: Iterable[StoredMessage], images: Images) -> list[dict[str, Any]]:
    """User messages showing the images tool results looked at (must follow ALL the results:
    providers want an assistant's tool results right after it)."""
    out: list[dict[str, Any]] = []
    for result in results:
        image = (result.get("metadata") or {}).get("image")
        if not isinstance(image, Mapping) or not image.get("path"):
            continue
        text = IMAGE_TEXT.format(path=image["path"])
        payload = images.get(_call_id_of(result))
        if payload is None:
            out.append({"role": "user", "content": text + IMAGE_GONE_NOTE})
            continue
        url = f"data:{payload['mime_type']};base64,{payload['data']}"
        parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
        out.append({"role": "user", "content": parts})
    return out


def _plain(message: StoredMessage) -> dict[str, Any]:
    content = message.get("content") or {}
    role = content.get("role", "user")
    return {"role": role, "content": content.get("content", "")}


def _assistant_turn(
    message: StoredMessage, results: list[StoredMessage], clip_chars: int | None
) -> list[dict[str, Any]]:
    content = message.get("content") or {}
    metadata = message.get("metadata") or {}
    calls = [c for c in content.get("tool_calls") or [] if isinstance(c, dict) and c.get("id")]
    text = content.get("content") or ""
    assistant: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        assistant["tool_calls"] = [_normalise_call(c) for c in calls]
    if metadata.get("thinking_blocks"):
        assistant["thinking_blocks"] = metadata["thinking_blocks"]
    out = [assistant]
    by_id = {_call_id_of(r): r for r in results}
    native_ids: set[str] = set()
    for call in calls:
        call_id = str(call["id"])
        native_ids.add(call_id)
        result = by_id.get(call_id)
        output = _result_text(result, clip_chars) if result is not None else INTERRUPTED_RESULT
        name = call.get("function", {}).get("name", "")
        out.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": output})
    others = [r for r in results if _call_id_of(r) not in native_ids]
    if others:
        out.append(_xml_results(others, clip_chars))
    return out


def _call_id_of(result: StoredMessage) -> str:
    return str((result.get("content") or {}).get("tool_call_id"))


def _normalise_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments", "")
    return {
        "id": call["id"],
        "type": "function",
        "function": {
            "name": function.get("name", ""),
            "arguments": arguments if isinstance(arguments, str) else str(arguments),
        },
    }


def _xml_results(results: Iterable[StoredMessage], clip_chars: int | None) -> dict[str, Any]:
    blocks = []
    for result in results:
        content = result.get("content") or {}
        name = html.escape(str(content.get("name", "")), quote=True)
        call_id = html.escape(str(content.get("tool_call_id", "")), quote=True)
        status = "" if (result.get("metadata") or {}).get("success", True) else ' success="false"'
        output = _result_text(result, clip_chars)
        blocks.append(
            f'<tool_result name="{name}" id="{call_id}"{status}>\n{output}\n</tool_result>'
        )
    return {"role": "user", "content": "\n".join(blocks)}


def _result_text(result: StoredMessage, clip_chars: int | None) -> str:
    content = result.get("content") or {}
    output = content.get("content", "")
    output = output if isinstance(output, str) else str(output)
    if clip_chars is None or content.get("name") == EXPAND_TOOL:
        return output
    note = (
        f'; call expand_message with message_id "{result.get("message_id")}" '
        "to read the full output"
    )
    clipped, _ = clip_text(output, clip_chars, note=note)
    return clipped
