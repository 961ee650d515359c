"""Agent runs, their event logs, and idempotency records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from shoal.db.base import Base, TimestampMixin
from shoal.kit.ids import new_id
from shoal.kit.time import utcnow

RUN_STATUSES = ("queued", "running", "completed", "failed", "stopped")
ACTIVE_STATUSES = ("queued", "running")


class AgentRun(TimestampMixin, Base):
    """One execution of the agent on a thread (DESIGN.md §2).

    ``attempt`` fences every worker write: a worker's transactions start with a conditional
    update ``WHERE id=? AND attempt=? AND status='running'``, so a stale holder's writes are
    refused. ``last_event_seq`` allocates the per-run event ``seq`` inside those transactions.
    """

    __tablename__ = "agent_runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'completed', 'failed', 'stopped')", name="status"
        ),
        Index("ix_agent_runs_thread_id_created_at", "thread_id", "created_at", "id"),
        Index("ix_agent_runs_project_id_status_created_at", "project_id", "status", "created_at"),
        Index("ix_agent_runs_account_id_status", "account_id", "status"),
        Index("ix_agent_runs_status_lease_expires_at", "status", "lease_expires_at"),
        # One running run per project (its threads share one sandbox), enforced by the database.
        Index(
            "uq_agent_runs_running_per_project",
            "project_id",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("threads.thread_id", ondelete="CASCADE")
    )
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.project_id", ondelete="CASCADE")
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.account_id", ondelete="CASCADE")
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agents.agent_id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    model_name: Mapped[str] = mapped_column(String(200))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_wakeup_at: Mapped[datetime | None]
    error: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    stop_requested_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class RunEvent(Base):
    """One event of a run's log; ``seq`` is 1, 2, 3, … per run with no gaps."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_created_at", "created_at"),)

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agent_runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """A start/initiate request remembered for 24 h per account and route."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.account_id", ondelete="CASCADE"), primary_key=True
    )
    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
