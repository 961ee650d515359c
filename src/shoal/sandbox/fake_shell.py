"""Just enough shell for :class:`~shoal.sandbox.fake.ScriptedSandbox` commands without a script.

``cmd; cmd`` sequences of ``echo …``, ``printf FMT``, ``exit N``, ``sleep N``, ``cat FILE…``,
``pwd``, ``true`` and ``false``, with ``$VARS`` from the environment, ``>&2`` and
``> FILE`` / ``>> FILE``. Anything else prints "command not found" and exits 127.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shoal.errors import ShoalError

if TYPE_CHECKING:
    from shoal.sandbox.fake import ScriptContext


async def mini_shell(ctx: ScriptContext) -> int:
    code = 0
    for raw in ctx.command.split(";"):
        words = [_expand(word, ctx.env) for word in shlex.split(raw)]
        if not words:
            continue
        out: list[str] = []
        target, append, to_err = _redirect(words)
        code = await _run(ctx, words, out, to_err)
        text = "".join(out)
        if target is not None:
            old = await _read_or_empty(ctx, target) if append else b""
            await ctx.write(target, old + text.encode())
        elif text:
            await ctx.emit("stderr" if to_err else "stdout", text)
        if words[0] == "exit":
            return code
    return code


def _redirect(words: list[str]) -> tuple[str | None, bool, bool]:
    """Strip a trailing redirection from ``words``: (file, append, to stderr)."""
    if words[-1:] == [">&2"]:
        del words[-1]
        return None, False, True
    if len(words) >= 3 and words[-2] in (">", ">>"):
        target, append = words[-1], words[-2] == ">>"
        del words[-2:]
        return target, append, False
    return None, False, False


async def _run(ctx: ScriptContext, words: list[str], out: list[str], to_err: bool) -> int:
    name, args = words[0], words[1:]
    if name == "echo":
        out.append(" ".join(args) + "\n")
    elif name == "printf":
        out.append((args[0] if args else "").replace("\\n", "\n"))
    elif name == "exit":
        return int(args[0]) if args else 0
    elif name == "sleep":
        await asyncio.sleep(float(args[0]))
    elif name in ("true", "false"):
        return 0 if name == "true" else 1
    elif name == "pwd":
        out.append(ctx.cwd + "\n")
    elif name == "cat":
        for path in args:
            try:
                out.append((await ctx.read(path)).decode("utf-8", "replace"))
            except ShoalError:
                await ctx.emit("stderr", f"cat: {path}: No such file or directory\n")
                return 1
    else:
        await ctx.emit("stderr", f"fake sandbox: {name}: command not found\n")
        return 127
    return 0


async def _read_or_empty(ctx: ScriptContext, path: str) -> bytes:
    try:
        return await ctx.read(path)
    except ShoalError:
        return b""


def _expand(word: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), word)
