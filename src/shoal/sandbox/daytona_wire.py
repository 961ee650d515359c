"""What the Daytona provider and its fake server agree on beyond the SDK's own models.

* **Command wrapping.** Daytona session commands take no working directory or environment, so
  the provider sends ``cd DIR && env K=V … bash -c CMD`` (every word shell-quoted).
  :func:`unwrap_command` reverses it — the provider uses it to report a session's own command,
  the fake to run the inner command with that cwd and env.
* **Log stream framing.** The toolbox streams a command's output over a websocket with every
  chunk prefixed by a marker (``\\x01\\x01\\x01`` stdout, ``\\x02\\x02\\x02`` stderr).
  :class:`StreamDemux` splits it, holding back only bytes that could begin a marker — the SDK's
  own splitter holds back the last two bytes of every message, which delays a short line such as
  ``a\\n`` until the next one arrives.

No ``daytona`` import here: the fake must not need the SDK's client side.
"""

from __future__ import annotations

import codecs
import re
import shlex
from collections.abc import Mapping

from shoal.errors import BadRequest

STDOUT_MARKER = b"\x01\x01\x01"
STDERR_MARKER = b"\x02\x02\x02"
EXEC_SESSION_PREFIX = "shoal-exec-"
"""Daytona sessions the provider opens for one ``exec``; never listed as user sessions."""
PREVIEW_TOKEN_HEADER = "x-daytona-preview-token"  # noqa: S105 - a header name

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def wrap_command(command: str, cwd: str, env: Mapping[str, str] | None = None) -> str:
    """``command`` run by bash in ``cwd`` with ``env`` added, as one shell line."""
    words = ["cd", shlex.quote(cwd), "&&"]
    if env:
        for name in env:
            if not _ENV_NAME.match(name):
                raise BadRequest(f"Invalid environment variable name: {name!r}")
        words += ["env", *(shlex.quote(f"{k}={v}") for k, v in env.items())]
    words += ["bash", "-c", shlex.quote(command)]
    return " ".join(words)


def unwrap_command(line: str) -> tuple[str, str, dict[str, str]] | None:
    """``(command, cwd, env)`` of a line :func:`wrap_command` made, else ``None``."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if len(words) < 6 or words[0] != "cd" or words[2] != "&&" or words[-3:-1] != ["bash", "-c"]:
        return None
    middle = words[3:-3]
    if middle and middle[0] != "env":
        return None
    env: dict[str, str] = {}
    for pair in middle[1:]:
        name, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(name):
            return None
        env[name] = value
    return words[-1], words[1], env


class StreamDemux:
    """Splits a marker-framed log stream into ``(stream, text)`` pieces as bytes arrive."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._stream = "stdout"
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        self._buf += data
        out: list[tuple[str, str]] = []
        while True:
            found = [
                (index, name)
                for marker, name in ((STDOUT_MARKER, "stdout"), (STDERR_MARKER, "stderr"))
                if (index := self._buf.find(marker)) >= 0
            ]
            if not found:
                break
            index, name = min(found)
            self._emit(out, bytes(self._buf[:index]))
            del self._buf[: index + len(STDOUT_MARKER)]
            self._stream = name
        keep = _possible_marker_start(self._buf)
        self._emit(out, bytes(self._buf[: len(self._buf) - keep]))
        del self._buf[: len(self._buf) - keep]
        return out

    def flush(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self._emit(out, bytes(self._buf))
        self._buf.clear()
        for name, decoder in self._decoders.items():
            if tail := decoder.decode(b"", final=True):
                out.append((name, tail))
        return out

    def _emit(self, out: list[tuple[str, str]], payload: bytes) -> None:
        if payload and (text := self._decoders[self._stream].decode(payload)):
            out.append((self._stream, text))


def _possible_marker_start(buf: bytearray) -> int:
    """How many trailing bytes could be the start of a marker (0, 1 or 2)."""
    for keep in (2, 1):
        tail = bytes(buf[-keep:]) if len(buf) >= keep else b""
        if tail and (STDOUT_MARKER.startswith(tail) or STDERR_MARKER.startswith(tail)):
            return keep
    return 0
