"""Sandbox and file shapes (DESIGN.md §4)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

SandboxStateName = Literal["creating", "started", "stopped", "error", "deleted"]


class SandboxRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sandbox_id: uuid.UUID
    project_id: uuid.UUID
    provider: str
    state: SandboxStateName
    error: str | None = None
    created_at: datetime
    last_active_at: datetime


class FileEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    path: str
    is_dir: bool
    size: int
    mod_time: datetime


class FileList(BaseModel):
    files: list[FileEntryRead]


class FileUploaded(BaseModel):
    path: str
    size: int
