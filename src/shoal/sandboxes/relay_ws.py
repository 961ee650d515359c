"""The WebSocket half of the port relay: the ``websockets`` sans-I/O client protocol over a
sandbox byte stream, bridged to a Starlette WebSocket."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from shoal.sandbox import PortConnection
from shoal.sandboxes.relay import (
    WS_HANDSHAKE_HEADERS,
    Target,
    close_quietly,
    forward_headers,
    open_byte_stream,
    ws_url,
)

_READ = 65536


class WebSocketBridge:
    """One relayed WebSocket. The client is accepted only after the sandbox accepted."""

    def __init__(self, client: WebSocket, dest: Target, *, path: str, query: str, prefix: str):
        self.client = client
        self.dest = dest
        requested = client.headers.get("sec-websocket-protocol", "")
        self.subprotocols = [p.strip() for p in requested.split(",") if p.strip()]
        self.protocol = ClientProtocol(
            parse_uri(ws_url(dest, path, query)),
            subprotocols=self.subprotocols or None,  # type: ignore[arg-type]
            max_size=None,
        )
        self.prefix = prefix
        self.conn: PortConnection | None = None
        self._parts: list[bytes] = []
        self._kind = Opcode.TEXT
        self._early: list[object] = []  # frames that came in the same read as the handshake

    async def run(self) -> None:
        self.conn = await open_byte_stream(self.dest)
        try:
            response = await self._handshake()
            if response is None:
                await self.client.close(code=1011, reason="The sandbox refused the WebSocket.")
                return
            await self.client.accept(subprotocol=response.headers.get("Sec-WebSocket-Protocol"))
            tasks = [asyncio.create_task(self._upstream()), asyncio.create_task(self._downstream())]
            _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
        finally:
            await close_quietly(self.conn)

    async def _flush(self) -> None:
        assert self.conn is not None
        for data in self.protocol.data_to_send():
            if data:
                self.conn.writer.write(data)
            else:
                with contextlib.suppress(OSError):
                    self.conn.writer.write_eof()
        await self.conn.writer.drain()

    async def _feed(self) -> bool:
        """Read from the sandbox into the protocol; False at end of stream."""
        assert self.conn is not None
        data = await self.conn.reader.read(_READ)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        await self._flush()
        return bool(data)

    async def _handshake(self) -> Response | None:
        request = self.protocol.connect()
        drop = WS_HANDSHAKE_HEADERS | {"sec-websocket-protocol"}
        for name, value in forward_headers(
            self.client.headers.items(), prefix=self.prefix, drop=drop
        ):
            request.headers[name] = value
        for name, value in (self.dest.link_headers or {}).items():
            request.headers[name] = value
        self.protocol.send_request(request)
        await self._flush()
        while True:
            more = await self._feed()
            events = self.protocol.events_received()
            for index, event in enumerate(events):
                if isinstance(event, Response):
                    self._early = list(events[index + 1 :])
                    return None if self.protocol.handshake_exc is not None else event
            if not more:
                return None

    async def _upstream(self) -> None:
        """Client → sandbox."""
        try:
            while True:
                message = await self.client.receive()
                if message["type"] == "websocket.disconnect":
                    self.protocol.send_close(int(message.get("code") or 1000))
                    await self._flush()
                    return
                if message.get("text") is not None:
                    self.protocol.send_text(message["text"].encode())
                elif message.get("bytes") is not None:
                    self.protocol.send_binary(message["bytes"])
                await self._flush()
        except WebSocketDisconnect:
            return

    async def _downstream(self) -> None:
        """Sandbox → client, reassembling fragmented messages."""
        early, self._early = self._early, []
        for frame in early:
            if isinstance(frame, Frame) and await self._deliver(frame):
                return
        while True:
            more = await self._feed()
            for frame in self.protocol.events_received():
                if isinstance(frame, Frame) and await self._deliver(frame):
                    return
            if not more:
                with contextlib.suppress(Exception):
                    await self.client.close(code=1011)
                return

    async def _deliver(self, frame: Frame) -> bool:
        """Pass one frame on; True when the sandbox closed the connection."""
        if frame.opcode == Opcode.CLOSE:
            close = Close.parse(frame.data) if frame.data else None
            await self.client.close(code=close.code if close else 1000)
            return True
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._kind, self._parts = frame.opcode, [bytes(frame.data)]
        elif frame.opcode == Opcode.CONT:
            self._parts.append(bytes(frame.data))
        else:
            return False  # ping/pong: the protocol answers pings itself
        if frame.fin:
            payload = b"".join(self._parts)
            self._parts = []
            if self._kind == Opcode.TEXT:
                await self.client.send_text(payload.decode("utf-8", "replace"))
            else:
                await self.client.send_bytes(payload)
        return False
