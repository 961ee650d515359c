"""Project sandboxes: one row per project, pointing at the provider's sandbox."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shoal.db.base import Base, TimestampMixin
from shoal.kit.ids import new_id
from shoal.kit.time import utcnow

SANDBOX_STATES = ("creating", "started", "stopped", "error", "deleted")


class Sandbox(TimestampMixin, Base):
    """A project's sandbox (DESIGN.md §6). The row exists before the provider's sandbox does:
    ``provider_sandbox_id`` is set when it is first created (lazily, before the first tool call
    or file operation). ``state`` is what shoal last saw; the provider is the truth."""

    __tablename__ = "sandboxes"
    __table_args__ = (
        CheckConstraint(
            "state IN ('creating', 'started', 'stopped', 'error', 'deleted')", name="state"
        ),
        Index("ix_sandboxes_state_last_active_at", "state", "last_active_at"),
    )

    sandbox_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.project_id", ondelete="CASCADE"), unique=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.account_id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    provider_sandbox_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="stopped")
    error: Mapped[str | None] = mapped_column(Text)
    last_active_at: Mapped[datetime] = mapped_column(default=utcnow)
