"""Incremental parser for XML tool calls in streamed model text.

Format::

    <function_calls>
    <invoke name="tool">
    <parameter name="p">value</parameter>
    </invoke>
    </function_calls>

Fed chunk by chunk (tags may be split anywhere), it returns each ``<invoke>`` as soon as it
is closed. Rules that make it robust against what models actually write:

- a ``</parameter>`` only closes a value when followed (after whitespace) by ``<parameter``,
  ``</invoke>`` or ``</function_calls>``; otherwise it is part of the value;
- values are HTML-unescaped and typed: JSON objects/arrays, ``true``/``false``, numbers, else
  text (the untyped text is kept too, for text parameters);
- at end of stream an ``<invoke>`` missing only its ``</invoke>`` is accepted; one cut off
  inside a value comes back with ``error`` set (it is reported to the model, not executed);
- no input makes ``feed``/``finish`` raise, and memory stays proportional to the value sizes.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

OPEN_BLOCK = "<function_calls>"
CLOSE_BLOCK = "</function_calls>"
CLOSE_INVOKE = "</invoke>"
CLOSE_PARAM = "</parameter>"
_AFTER_PARAM = ("<parameter", CLOSE_INVOKE, CLOSE_BLOCK)
_INVOKE_RE = re.compile(r"<invoke\s+name\s*=\s*(?:\"([^\"<>]*)\"|'([^'<>]*)')\s*>")
_PARAM_RE = re.compile(r"<parameter\s+name\s*=\s*(?:\"([^\"<>]*)\"|'([^'<>]*)')\s*>")
_NUMBER_RE = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_MAX_TAG = 2000


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(slots=True)
class XmlToolCall:
    """One parsed ``<invoke>``. ``error`` is set when it was cut off and must not run."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw_arguments: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_call_id)
    error: str | None = None


class _State(Enum):
    OUTSIDE = "outside"
    BLOCK = "block"
    INVOKE = "invoke"
    PARAM = "param"


def typed_value(text: str) -> Any:
    """JSON object/array, boolean or number when ``text`` is one; else the text itself."""
    stripped = text.strip()
    if stripped in ("true", "True"):
        return True
    if stripped in ("false", "False"):
        return False
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        try:
            return json.loads(stripped)
        except (ValueError, RecursionError):
            return stripped
    if len(stripped) < 40 and _NUMBER_RE.fullmatch(stripped):
        is_float = any(mark in stripped for mark in ".eE")
        return float(stripped) if is_float else int(stripped)
    return stripped


def _raw_value(text: str) -> str:
    value = html.unescape(text)
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _could_start(text: str, *tags: str) -> bool:
    """``text`` is a proper prefix of one of ``tags`` (more input may complete it)."""
    return any(len(text) < len(tag) and tag.startswith(text) for tag in tags)


class XmlToolCallParser:
    """Feed text chunks; get completed calls back. Never raises."""

    def __init__(self) -> None:
        self._buf = ""
        self._state = _State.OUTSIDE
        self._call: XmlToolCall | None = None
        self._param: str | None = None
        self._parts: list[str] = []

    @property
    def in_call(self) -> bool:
        """True while inside a ``<function_calls>`` block."""
        return self._state is not _State.OUTSIDE

    def feed(self, chunk: str) -> list[XmlToolCall]:
        out: list[XmlToolCall] = []
        try:
            self._buf += chunk
            self._run(out, final=False)
        except Exception:  # never let a model's text break the stream
            self._reset()
        return out

    def finish(self) -> list[XmlToolCall]:
        """End of stream: flush what can be completed."""
        out: list[XmlToolCall] = []
        try:
            self._run(out, final=True)
            if self._state is _State.PARAM and self._call is not None:
                self._call.error = (
                    f"The call to `{self._call.name}` was cut off inside parameter "
                    f"`{self._param}` (no </parameter>), so it was not executed."
                )
                out.append(self._call)
            elif self._state is _State.INVOKE and self._call is not None:
                out.append(self._call)
        except Exception:  # a broken tail must not break the stream
            out = [call for call in out if call is not self._call]
        self._reset()
        return out

    def _reset(self) -> None:
        self._buf, self._state = "", _State.OUTSIDE
        self._call, self._param, self._parts = None, None, []

    def _run(self, out: list[XmlToolCall], *, final: bool) -> None:
        steps = {
            _State.OUTSIDE: self._outside,
            _State.BLOCK: self._block,
            _State.INVOKE: self._invoke,
            _State.PARAM: self._value,
        }
        while steps[self._state](out, final):
            pass

    # -- states: each returns True when it made progress -------------------------------------
    def _outside(self, out: list[XmlToolCall], final: bool) -> bool:
        index = self._buf.find(OPEN_BLOCK)
        if index >= 0:
            self._buf = self._buf[index + len(OPEN_BLOCK) :]
            self._state = _State.BLOCK
            return True
        cut = self._buf.rfind("<", max(0, len(self._buf) - len(OPEN_BLOCK)))
        tail = self._buf[cut:] if cut >= 0 else ""
        self._buf = tail if tail and OPEN_BLOCK.startswith(tail) and not final else ""
        return False

    def _block(self, out: list[XmlToolCall], final: bool) -> bool:
        self._buf = self._buf.lstrip()
        buf = self._buf
        if not buf:
            return False
        if buf.startswith(CLOSE_BLOCK):
            self._buf, self._state = buf[len(CLOSE_BLOCK) :], _State.OUTSIDE
            return True
        if buf.startswith("<invoke"):
            return self._open_invoke(final)
        return self._skip_junk(final, CLOSE_BLOCK, "<invoke")

    def _open_invoke(self, final: bool) -> bool:
        match = _INVOKE_RE.match(self._buf)
        if match:
            self._call = XmlToolCall(name=(match.group(1) or match.group(2) or "").strip())
            self._buf, self._state = self._buf[match.end() :], _State.INVOKE
            return True
        return self._skip_bad_tag(final)

    def _invoke(self, out: list[XmlToolCall], final: bool) -> bool:
        self._buf = self._buf.lstrip()
        buf = self._buf
        if not buf:
            return False
        if buf.startswith(CLOSE_INVOKE):
            self._emit(out)
            self._buf, self._state = buf[len(CLOSE_INVOKE) :], _State.BLOCK
            return True
        if buf.startswith(CLOSE_BLOCK) or buf.startswith("<invoke"):
            self._emit(out)  # a missing </invoke>: accept the call as written
            self._state = _State.BLOCK
            return True
        if buf.startswith("<parameter"):
            match = _PARAM_RE.match(buf)
            if match:
                self._param = (match.group(1) or match.group(2) or "").strip()
                self._parts = []
                self._buf, self._state = buf[match.end() :], _State.PARAM
                return True
            return self._skip_bad_tag(final)
        return self._skip_junk(final, CLOSE_INVOKE, "<parameter", CLOSE_BLOCK, "<invoke")

    def _value(self, out: list[XmlToolCall], final: bool) -> bool:
        buf = self._buf
        index = buf.find(CLOSE_PARAM)
        if index < 0:
            keep = len(CLOSE_PARAM) - 1
            if len(buf) > keep:
                self._parts.append(buf[:-keep])
                self._buf = buf[-keep:]
            return False
        after = buf[index + len(CLOSE_PARAM) :]
        rest = after.lstrip()
        closes = rest.startswith(_AFTER_PARAM)
        undecided = not closes and (not rest or _could_start(rest, *_AFTER_PARAM))
        if closes or (undecided and final):
            self._parts.append(buf[:index])
            self._close_param()
            self._buf, self._state = after, _State.INVOKE
            return True
        if undecided:
            self._parts.append(buf[:index])
            self._buf = buf[index:]
            return False
        self._parts.append(buf[: index + len(CLOSE_PARAM)])
        self._buf = after
        return True

    # -- helpers ------------------------------------------------------------------------------
    def _close_param(self) -> None:
        assert self._call is not None and self._param is not None
        raw = _raw_value("".join(self._parts))
        self._call.raw_arguments[self._param] = raw
        self._call.arguments[self._param] = typed_value(raw)
        self._param, self._parts = None, []

    def _emit(self, out: list[XmlToolCall]) -> None:
        if self._call is not None:
            out.append(self._call)
        self._call = None

    def _skip_bad_tag(self, final: bool) -> bool:
        end = self._buf.find(">")
        if end >= 0:
            self._buf = self._buf[end + 1 :]
            return True
        if final or len(self._buf) > _MAX_TAG:
            self._buf = ""
        return False

    def _skip_junk(self, final: bool, *tags: str) -> bool:
        buf = self._buf
        if _could_start(buf, *tags) and not final:
            return False  # maybe the start of an expected tag: wait for more
        next_tag = buf.find("<", 1)
        self._buf = buf[next_tag:] if next_tag >= 0 else ""
        return next_tag >= 0
