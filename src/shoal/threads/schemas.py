"""Project, thread and message shapes (DESIGN.md §4).

Inputs forbid unknown fields; a PATCH sends only the fields it changes, and a field that cannot
be null refuses an explicit ``null`` (422) instead of silently ignoring it.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

MAX_METADATA_BYTES = 64 * 1024
MESSAGE_TYPES = ("user", "assistant", "tool", "status", "summary")
CLIENT_MESSAGE_TYPES = ("user",)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON: how limits on stored JSON are measured."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _metadata_limit(value: dict[str, Any]) -> dict[str, Any]:
    size = json_size(value)
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}")
    return value


def _not_null(value: object, info: ValidationInfo) -> object:
    if value is None:
        raise ValueError(f"{info.field_name} cannot be null; omit it to leave it unchanged")
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=10_000)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata_limit)]
SandboxNetwork = Literal["none", "open"]


class ErrorBody(BaseModel):
    """Every error: a human message and a stable code (DESIGN.md §4)."""

    detail: str
    code: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not found, or not yours (`not_found`)."}
}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or invalid credentials (`unauthorized`)."}
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **UNAUTHORIZED,
    403: {
        "model": ErrorBody,
        "description": "The project is public, so you can see it, but you are not a member of "
        "its account (`forbidden`).",
    },
    **NOT_FOUND,
}
LIST_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The cursor is not valid (`invalid_cursor`)."},
    **UNAUTHORIZED,
}


# -- projects ------------------------------------------------------------------------------------


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None
    is_public: bool = Field(False, description="anyone, even anonymous, may read it")
    sandbox_network: SandboxNetwork = Field(
        "none", description="`none`: loopback only; `open`: outbound internet"
    )


class ProjectUpdate(BaseModel):
    """Only the fields sent change; `description` may be set to null."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    is_public: bool | None = None
    sandbox_network: SandboxNetwork | None = None

    _non_nullable = field_validator("name", "is_public", "sandbox_network")(_not_null)


class ProjectRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    project_id: uuid.UUID
    account_id: uuid.UUID
    name: str
    description: str | None
    is_public: bool
    sandbox_network: SandboxNetwork
    created_at: datetime
    updated_at: datetime


class ProjectList(BaseModel):
    projects: list[ProjectRead]
    next_cursor: str | None


# -- threads -------------------------------------------------------------------------------------


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: uuid.UUID | None = Field(
        None, description="the project to add the thread to; omitted: a new project is created"
    )
    name: Name | None = None
    agent_id: uuid.UUID | None = Field(None, description="agent config used by runs")
    metadata: Metadata = Field(default_factory=dict, description="any JSON object ≤ 64 KB")


class ThreadUpdate(BaseModel):
    """Only the fields sent change; `name` and `agent_id` may be set to null."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    agent_id: uuid.UUID | None = None
    metadata: Metadata | None = None

    _non_nullable = field_validator("metadata")(_not_null)


class ThreadRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    thread_id: uuid.UUID
    project_id: uuid.UUID
    account_id: uuid.UUID
    name: str | None
    agent_id: uuid.UUID | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("meta", "metadata"))
    created_at: datetime
    updated_at: datetime


class ThreadList(BaseModel):
    threads: list[ThreadRead]
    next_cursor: str | None


# -- messages ------------------------------------------------------------------------------------


class _ImageUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str
    cache_control: dict[str, Any] | None = None


class _ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["image_url"]
    image_url: _ImageUrl
    cache_control: dict[str, Any] | None = None


_ContentPart = Annotated[_TextPart | _ImagePart, Field(discriminator="type")]


class UserChatMessage(BaseModel):
    """An OpenAI-style user message: text, or a list of `text` / `image_url` parts."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user"]
    content: str | Annotated[list[_ContentPart], Field(min_length=1)]
    name: str | None = None


_USER_MESSAGE = TypeAdapter(UserChatMessage)


def _is_branch(part: str) -> bool:
    return part == "str" or "[" in part


def _user_content(value: object) -> dict[str, Any]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("content must not be empty")
        return {"role": "user", "content": value}
    if not isinstance(value, dict):
        raise ValueError(
            'content must be a text or a chat message object like {"role": "user", "content": …}'
        )
    try:
        message = _USER_MESSAGE.validate_python(value)
    except ValidationError as exc:
        # The deepest error is the most specific one (a bad part beats "not a string"); union
        # branch labels such as "str" or "list[…]" mean nothing to a client and are dropped.
        best = max(exc.errors(), key=lambda error: len(error["loc"]))
        where = ".".join(
            str(part) for part in best["loc"] if not (isinstance(part, str) and _is_branch(part))
        )
        raise ValueError(
            f"not a valid user chat message ({where}: {best['msg']}); expected "
            '{"role": "user", "content": "<text>" | [{"type": "text", "text": …} | '
            '{"type": "image_url", "image_url": {"url": …}}]}'
        ) from None
    return message.model_dump(exclude_none=True)


class MessageCreate(BaseModel):
    """A message added to a thread without starting a run."""

    model_config = ConfigDict(extra="forbid")

    # Declared before `content`: content is checked against the type.
    type: str = Field("user", description="only `user` may be added by clients")
    content: Any = Field(
        description='a text (becomes {"role": "user", "content": text}) or a chat message object'
    )

    @field_validator("type")
    @classmethod
    def _client_type(cls, value: str) -> str:
        if value not in CLIENT_MESSAGE_TYPES:
            raise ValueError(
                f"only 'user' messages can be added by clients; {value!r} messages are "
                "written by runs"
                if value in MESSAGE_TYPES
                else f"unknown message type {value!r}; clients may add 'user' messages"
            )
        return value

    @field_validator("content")
    @classmethod
    def _content_for_type(cls, value: object, info: ValidationInfo) -> object:
        if info.data.get("type") == "user":
            return _user_content(value)
        return value  # the type itself was refused; its error is the one reported


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    message_id: uuid.UUID
    thread_id: uuid.UUID
    seq: int = Field(description="position in the thread: 1, 2, 3, … (messages are listed by it)")
    agent_run_id: uuid.UUID | None
    type: str
    is_llm_message: bool
    content: dict[str, Any]
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("meta", "metadata"))
    created_at: datetime


class MessageList(BaseModel):
    messages: list[MessageRead]
    next_cursor: str | None
    stream_cursor: str | None = Field(
        None,
        description="Last-Event-ID for GET /api/threads/{thread_id}/stream that continues "
        "right after this history; null when the thread has no run events yet (then the stream "
        "from its start is the continuation)",
    )
