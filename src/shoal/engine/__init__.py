"""The agent engine (agentpress): loop, response processor, XML parser, context manager.

Pure: no FastAPI, SQLAlchemy or Dramatiq. Storage and streaming go through ``ports``.
"""

from shoal.engine.entry import run_agent
from shoal.engine.events import Event
from shoal.engine.ports import (
    CollectingSink,
    EventSink,
    InMemoryMessageStore,
    MessageStore,
    StoredMessage,
)
from shoal.engine.thread_manager import ThreadManager
from shoal.engine.types import AgentConfig, FinishReason, RunOptions, RunResult, UsageTotals

__all__ = [
    "AgentConfig",
    "CollectingSink",
    "Event",
    "EventSink",
    "FinishReason",
    "InMemoryMessageStore",
    "MessageStore",
    "RunOptions",
    "RunResult",
    "StoredMessage",
    "ThreadManager",
    "UsageTotals",
    "run_agent",
]
