"""Reading a pipe from asyncio without a thread that could outlive the pipe."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable


async def read_pipe(fd: int, *, complete: Callable[[bytes], bool], seconds: float) -> bytes:
    """Read ``fd`` (taking ownership: it is closed) until ``complete(data)``, EOF or ``seconds``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    data = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(4096):
                data += chunk
                if complete(data):
                    break
    except TimeoutError:
        pass
    finally:
        with contextlib.suppress(OSError):
            transport.close()
    return data
