"""Agent config shapes (DESIGN.md §4)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# The built-in tool functions (names are contract, DESIGN.md §5).
BUILTIN_TOOLS: tuple[str, ...] = (
    "execute_command",
    "check_command_output",
    "terminate_command",
    "list_commands",
    "create_file",
    "str_replace",
    "full_file_rewrite",
    "delete_file",
    "read_file",
    "expose_port",
    "see_image",
    "web_search",
    "scrape_webpage",
    "expand_message",
    "ask",
    "complete",
)


def _known_tools(value: list[str]) -> list[str]:
    unknown = [name for name in value if name not in BUILTIN_TOOLS]
    if unknown:
        raise ValueError(
            f"unknown tool(s) {', '.join(sorted(set(unknown)))}; known: {', '.join(BUILTIN_TOOLS)}"
        )
    return list(dict.fromkeys(value))


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=10_000)]
SystemPrompt = Annotated[str, StringConstraints(max_length=100_000)]
Tools = Annotated[list[str], Field(max_length=len(BUILTIN_TOOLS) * 2), AfterValidator(_known_tools)]


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None
    system_prompt: SystemPrompt = ""
    model_name: ModelName | None = Field(None, description="any LiteLLM model; null: the default")
    tools: Tools = Field(default_factory=lambda: list(BUILTIN_TOOLS), description="tools offered")
    is_default: bool = False


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    system_prompt: SystemPrompt | None = None
    model_name: ModelName | None = None
    tools: Tools | None = None
    is_default: bool | None = None


class AgentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agent_id: uuid.UUID
    account_id: uuid.UUID
    name: str
    description: str | None
    system_prompt: str
    model_name: str | None
    tools: list[str]
    is_default: bool
    created_at: datetime
    updated_at: datetime


class AgentList(BaseModel):
    agents: list[AgentRead]
    next_cursor: str | None
