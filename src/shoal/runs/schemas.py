"""Run shapes (DESIGN.md §4)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

RunStatus = Literal["queued", "running", "completed", "failed", "stopped"]
MultitaskStrategy = Literal["interrupt", "reject", "enqueue"]
ReasoningEffort = Literal["low", "medium", "high"]
Prompt = Annotated[str, StringConstraints(min_length=1)]


class RunOptions(BaseModel):
    """How a run executes; everything but the prompt is stored on the run."""

    model_config = ConfigDict(extra="forbid")

    model_name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    agent_id: uuid.UUID | None = None
    enable_thinking: bool = False
    reasoning_effort: ReasoningEffort | None = None
    enable_context_manager: bool = True
    max_iterations: int | None = Field(None, ge=1, le=1000)
    multitask_strategy: MultitaskStrategy = "interrupt"
    metadata: dict[str, Any] = Field(default_factory=dict)


class RunStart(RunOptions):
    """Body of ``POST /api/threads/{thread_id}/agent/start``."""

    prompt: Prompt | None = Field(None, description="added as a user message first")


class RunStarted(BaseModel):
    agent_run_id: uuid.UUID
    status: Literal["queued"] = "queued"


class InitiateStarted(RunStarted):
    project_id: uuid.UUID
    thread_id: uuid.UUID


class RunError(BaseModel):
    code: str
    message: str


class RunUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class RunRead(BaseModel):
    id: uuid.UUID
    thread_id: uuid.UUID
    project_id: uuid.UUID
    status: RunStatus
    model_name: str
    agent_id: uuid.UUID | None
    attempt: int
    error: RunError | None
    finish_reason: str | None
    usage: RunUsage
    stop_requested_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)


class RunList(BaseModel):
    agent_runs: list[RunRead]
    next_cursor: str | None
