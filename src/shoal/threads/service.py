"""Projects, threads and messages: access rules and the operations on them.

Access (DESIGN.md §4, Tenancy): a caller reads a project, its threads and their messages when
they are a member of its account or when the project is public; only members write. A private
resource the caller cannot read does not exist for them (404); a public one they may read but
not write is refused with 401 (anonymous) or 403 (signed in, not a member).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shoal.auth.principal import Principal
from shoal.db.models import Message, Project, Thread
from shoal.db.repository import Page
from shoal.errors import Forbidden, NotFound, PayloadTooLarge, Unauthorized
from shoal.kit.ids import parse_id
from shoal.kit.pagination import SeqCursor, TimeCursor
from shoal.kit.streams import thread_event_id
from shoal.threads.repository import (
    Loaded,
    MessageRepository,
    ProjectRepository,
    ThreadRepository,
)
from shoal.threads.schemas import (
    MessageCreate,
    ProjectCreate,
    ProjectUpdate,
    ThreadCreate,
    ThreadUpdate,
    json_size,
)

DEFAULT_PROJECT_NAME = "New project"
DeleteHook = Callable[[AsyncSession, uuid.UUID], Awaitable[None]]
# (session, the updated project, the fields the update changed: name → new value)
UpdateHook = Callable[[AsyncSession, Project, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ProjectHooks:
    """Work upper layers need done, in the same transaction, when a project or thread changes:
    before one goes (the runs layer stops active runs so no worker writes into deleted rows),
    and after a project is updated (the sandboxes layer applies a new ``sandbox_network``)."""

    before_project_delete: tuple[DeleteHook, ...] = ()
    before_thread_delete: tuple[DeleteHook, ...] = ()
    after_project_update: tuple[UpdateHook, ...] = ()


def _check_write(loaded: Loaded[Any], principal: Principal | None, what: str) -> None:
    if loaded.is_member:
        return
    if principal is None:
        raise Unauthorized(f"Sign in to change this {what}.")
    raise Forbidden(
        f"This {what} is public: you can read it, but only members of its account can change it."
    )


# -- projects ------------------------------------------------------------------------------------


async def load_project(
    session: AsyncSession, principal: Principal | None, project_id: str | uuid.UUID, *, write: bool
) -> Project:
    """The project if the caller may read it (and write it, with ``write``), else raise."""
    parsed = parse_id(project_id)
    loaded = (
        None if parsed is None else await ProjectRepository(session).get_readable(parsed, principal)
    )
    if loaded is None:
        raise NotFound("Project not found.")
    if write:
        _check_write(loaded, principal, "project")
    return loaded.row


async def create_project(
    session: AsyncSession, principal: Principal, *, account_id: uuid.UUID, data: ProjectCreate
) -> Project:
    return await ProjectRepository(session).create(account_id=account_id, values=data.model_dump())


async def list_projects(
    session: AsyncSession,
    principal: Principal,
    *,
    account_id: uuid.UUID,
    cursor: str | None,
    limit: int,
) -> Page[Project]:
    after = None if cursor is None else TimeCursor.decode(cursor)
    return await ProjectRepository(session).page_for_account(
        principal, account_id=account_id, after=after, limit=limit
    )


async def update_project(
    session: AsyncSession,
    principal: Principal | None,
    *,
    project: Project,
    data: ProjectUpdate,
    hooks: ProjectHooks | None = None,
) -> Project:
    values = data.model_dump(exclude_unset=True)
    changed = {k: v for k, v in values.items() if getattr(project, k) != v}
    if not values:
        return project
    updated = await ProjectRepository(session).update(project, values)
    if changed:
        for hook in (hooks or ProjectHooks()).after_project_update:
            await hook(session, updated, changed)
    return updated


async def delete_project(
    session: AsyncSession,
    principal: Principal | None,
    *,
    project: Project,
    hooks: ProjectHooks | None = None,
) -> None:
    """Delete a project with its threads and messages (the foreign keys cascade), after the
    registered hooks (stop the active run; later: delete the sandbox)."""
    for hook in (hooks or ProjectHooks()).before_project_delete:
        await hook(session, project.project_id)
    await ProjectRepository(session).delete(project.project_id)


# -- threads -------------------------------------------------------------------------------------


async def create_thread_for_prompt(
    session: AsyncSession, principal: Principal, *, account_id: uuid.UUID, prompt: str
) -> Thread:
    """A new project and thread named after the first words of ``prompt`` (``initiate``)."""
    words = " ".join(prompt.split())
    name = (words[:57] + "…") if len(words) > 60 else (words or DEFAULT_PROJECT_NAME)
    project = await ProjectRepository(session).create(account_id=account_id, values={"name": name})
    return await ThreadRepository(session).create(
        project_id=project.project_id, account_id=account_id, values={"name": name}
    )


async def load_thread(
    session: AsyncSession, principal: Principal | None, thread_id: str | uuid.UUID, *, write: bool
) -> Thread:
    """The thread if the caller may read it (and write it, with ``write``), else raise."""
    parsed = parse_id(thread_id)
    loaded = (
        None if parsed is None else await ThreadRepository(session).get_readable(parsed, principal)
    )
    if loaded is None:
        raise NotFound("Thread not found.")
    if write:
        _check_write(loaded, principal, "thread")
    return loaded.row


async def create_thread(
    session: AsyncSession, principal: Principal, *, account_id: uuid.UUID, data: ThreadCreate
) -> Thread:
    """A thread in ``data.project_id`` (which decides the account), or in a new project of
    ``account_id`` named after the thread."""
    if data.project_id is not None:
        project = await load_project(session, principal, data.project_id, write=True)
    else:
        project = await ProjectRepository(session).create(
            account_id=account_id, values={"name": data.name or DEFAULT_PROJECT_NAME}
        )
    return await ThreadRepository(session).create(
        project_id=project.project_id,
        account_id=project.account_id,
        values={"name": data.name, "agent_id": data.agent_id, "meta": data.metadata},
    )


async def list_threads(
    session: AsyncSession,
    principal: Principal,
    *,
    account_id: uuid.UUID,
    project_id: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Thread]:
    """The acting account's threads; with ``project_id`` only that project's (which the caller
    must be able to read)."""
    project = None
    if project_id is not None:
        project = await load_project(session, principal, project_id, write=False)
    after = None if cursor is None else TimeCursor.decode(cursor)
    return await ThreadRepository(session).page_for_account(
        principal,
        account_id=account_id,
        project_id=None if project is None else project.project_id,
        after=after,
        limit=limit,
    )


async def update_thread(
    session: AsyncSession, principal: Principal | None, *, thread: Thread, data: ThreadUpdate
) -> Thread:
    values = data.model_dump(exclude_unset=True)
    if "metadata" in values:
        values["meta"] = values.pop("metadata")
    if not values:
        return thread
    return await ThreadRepository(session).update(thread, values)


async def delete_thread(
    session: AsyncSession,
    principal: Principal | None,
    *,
    thread: Thread,
    hooks: ProjectHooks | None = None,
) -> None:
    """Delete a thread with its messages (the foreign key cascades), after the registered
    hooks (stop the thread's active run)."""
    for hook in (hooks or ProjectHooks()).before_thread_delete:
        await hook(session, thread.thread_id)
    await ThreadRepository(session).delete(thread.thread_id)


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessagePage:
    messages: Sequence[Message]
    next_cursor: str | None
    # Where the thread stream continues right after this history (null: from the start).
    stream_cursor: str | None = None


async def list_messages(
    session: AsyncSession,
    principal: Principal | None,
    *,
    thread: Thread,
    cursor: str | None,
    limit: int,
) -> MessagePage:
    after = None if cursor is None else SeqCursor.decode(cursor)
    repo = MessageRepository(session)
    page, position = await repo.page_and_position(thread.thread_id, after=after, limit=limit)
    return MessagePage(
        messages=page.items,
        next_cursor=page.next_cursor,
        stream_cursor=None if position is None else thread_event_id(*position),
    )


async def add_message(
    session: AsyncSession,
    principal: Principal | None,
    *,
    thread: Thread,
    data: MessageCreate,
    max_bytes: int,
) -> Message:
    """Append a client message (validated by ``MessageCreate``) to the thread."""
    size = json_size(data.content)
    if size > max_bytes:
        raise PayloadTooLarge(
            f"Message content is {size} bytes of JSON; the limit is {max_bytes} bytes."
        )
    return await MessageRepository(session).add(
        thread.thread_id, type=data.type, content=data.content, is_llm_message=True
    )
