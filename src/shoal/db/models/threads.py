"""Projects, threads and messages (the conversation store)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shoal.db.base import Base, TimestampMixin
from shoal.kit.ids import new_id
from shoal.kit.time import utcnow


class Project(TimestampMixin, Base):
    """A workspace: its threads share one sandbox and one active run."""

    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("sandbox_network IN ('none', 'open')", name="sandbox_network"),
        Index("ix_projects_account_id_created_at", "account_id", "created_at", "project_id"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.account_id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    sandbox_network: Mapped[str] = mapped_column(String(16), default="none")


class Thread(TimestampMixin, Base):
    __tablename__ = "threads"
    __table_args__ = (
        Index("ix_threads_account_id_created_at", "account_id", "created_at", "thread_id"),
        Index("ix_threads_project_id_created_at", "project_id", "created_at", "thread_id"),
    )

    thread_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.project_id", ondelete="CASCADE")
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.account_id", ondelete="CASCADE")
    )
    name: Mapped[str | None] = mapped_column(String(200))
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agents.agent_id", ondelete="SET NULL"), index=True
    )
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    last_message_seq: Mapped[int] = mapped_column(Integer, default=0)


class Message(Base):
    """One stored chat message; ``seq`` orders a thread's messages (1, 2, 3, …)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("thread_id", "seq"),
        CheckConstraint("type IN ('user', 'assistant', 'tool', 'status', 'summary')", name="type"),
    )

    message_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("threads.thread_id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    agent_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agent_runs.id", ondelete="SET NULL"), index=True
    )
    type: Mapped[str] = mapped_column(String(16))
    is_llm_message: Mapped[bool] = mapped_column(Boolean, default=True)
    content: Mapped[dict[str, Any]]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
