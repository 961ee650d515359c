"""The engine's ports: where messages are stored and where events go.

The run worker implements them over the database and the event log; the in-memory versions
here serve tests and embedded use. Stored messages are dicts in the DESIGN §4 shape:
``{message_id, thread_id, agent_run_id, type, is_llm_message, content, metadata, created_at}``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeAlias

from shoal.engine.events import Event
from shoal.kit.ids import new_id
from shoal.kit.time import utcnow

MessageType: TypeAlias = Literal["user", "assistant", "tool", "status", "summary"]
StoredMessage: TypeAlias = dict[str, Any]


class MessageStore(Protocol):
    """A thread's messages, in order.

    ``announces_messages``: whether ``add_message`` also emits the message's ``message`` event
    itself (the run worker's store writes the row and the event in one transaction, so no
    reader sees one without the other); when false the engine emits it after the store."""

    announces_messages: bool

    async def list_llm_messages(self, thread_id: str) -> list[StoredMessage]:
        """Every message with ``is_llm_message`` true, oldest first."""
        ...

    async def add_message(
        self,
        thread_id: str,
        *,
        type: MessageType,
        content: dict[str, Any],
        is_llm_message: bool = True,
        metadata: dict[str, Any] | None = None,
        message_id: str | None = None,
        agent_run_id: str | None = None,
    ) -> StoredMessage:
        """Store a message (under ``message_id`` when given) and return it as stored."""
        ...

    async def get_message(self, thread_id: str, message_id: str) -> StoredMessage | None:
        """One message of the thread, or ``None`` (also when it belongs to another thread)."""
        ...


class EventSink(Protocol):
    """Receives every engine event in order; the run worker numbers, stores and fans them out."""

    async def emit(self, type: str, data: dict[str, Any]) -> None: ...


def new_message_id() -> str:
    return str(new_id())


class InMemoryMessageStore:
    """A ``MessageStore`` in a dict (tests, benchmarks)."""

    announces_messages = False

    def __init__(self) -> None:
        self._threads: dict[str, list[StoredMessage]] = {}

    def all_messages(self, thread_id: str) -> list[StoredMessage]:
        return copy.deepcopy(self._threads.get(thread_id, []))

    async def list_llm_messages(self, thread_id: str) -> list[StoredMessage]:
        return [m for m in self.all_messages(thread_id) if m["is_llm_message"]]

    async def add_message(
        self,
        thread_id: str,
        *,
        type: MessageType,
        content: dict[str, Any],
        is_llm_message: bool = True,
        metadata: dict[str, Any] | None = None,
        message_id: str | None = None,
        agent_run_id: str | None = None,
    ) -> StoredMessage:
        message: StoredMessage = {
            "message_id": message_id or new_message_id(),
            "thread_id": thread_id,
            "agent_run_id": agent_run_id,
            "type": type,
            "is_llm_message": is_llm_message,
            "content": copy.deepcopy(content),
            "metadata": copy.deepcopy(metadata or {}),
            "created_at": utcnow().isoformat(),
        }
        self._threads.setdefault(thread_id, []).append(message)
        return copy.deepcopy(message)

    async def get_message(self, thread_id: str, message_id: str) -> StoredMessage | None:
        for message in self._threads.get(thread_id, []):
            if message["message_id"] == message_id:
                return copy.deepcopy(message)
        return None


class CollectingSink:
    """An ``EventSink`` that keeps every event (tests); ``on_event`` may observe them live."""

    def __init__(self, on_event: Callable[[Event], None] | None = None) -> None:
        self.events: list[Event] = []
        self.on_event = on_event
        self.changed = asyncio.Event()

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        event = Event(type, copy.deepcopy(data))
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        self.changed.set()

    def of_type(self, *types: str) -> list[Event]:
        return [event for event in self.events if event.type in types]

    def types(self) -> list[str]:
        return [event.type for event in self.events]
