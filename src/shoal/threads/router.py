"""/api/projects, /api/threads and /api/threads/{thread_id}/messages (HTTP only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from shoal.accounts.deps import ActingAccount, CurrentPrincipal, OptionalPrincipal
from shoal.db.deps import SessionDep
from shoal.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shoal.threads import service
from shoal.threads.deps import (
    MaxMessageBytes,
    ProjectHooksDep,
    ReadableProject,
    ReadableThread,
    WritableProject,
    WritableThread,
)
from shoal.threads.schemas import (
    LIST_ERRORS,
    NOT_FOUND,
    UNAUTHORIZED,
    WRITE_ERRORS,
    ErrorBody,
    MessageCreate,
    MessageList,
    MessageRead,
    ProjectCreate,
    ProjectList,
    ProjectRead,
    ProjectUpdate,
    ThreadCreate,
    ThreadList,
    ThreadRead,
    ThreadUpdate,
)

router = APIRouter(tags=["threads"])

Limit = Annotated[
    int,
    Query(ge=1, le=MAX_LIMIT, description=f"page size (1–{MAX_LIMIT}, default {DEFAULT_LIMIT})"),
]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page")
]


# -- projects ------------------------------------------------------------------------------------


@router.post(
    "/projects",
    status_code=201,
    response_model=ProjectRead,
    responses={**UNAUTHORIZED, **NOT_FOUND},
)
async def create_project(
    body: ProjectCreate, session: SessionDep, principal: CurrentPrincipal, account_id: ActingAccount
) -> ProjectRead:
    """Create a project in the acting account (`X-Account-Id`, default: your personal one).

    A project groups threads that share one sandbox and one active run. `is_public: true` lets
    anyone read it, its threads and messages; `sandbox_network` decides whether its sandbox may
    reach the internet. 404 when `X-Account-Id` names an account you are not a member of.
    """
    project = await service.create_project(session, principal, account_id=account_id, data=body)
    return ProjectRead.model_validate(project)


@router.get("/projects", response_model=ProjectList, responses={**LIST_ERRORS, **NOT_FOUND})
async def list_projects(
    session: SessionDep,
    principal: CurrentPrincipal,
    account_id: ActingAccount,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ProjectList:
    """Projects of the acting account, newest first."""
    page = await service.list_projects(
        session, principal, account_id=account_id, cursor=cursor, limit=limit
    )
    return ProjectList(
        projects=[ProjectRead.model_validate(p) for p in page.items], next_cursor=page.next_cursor
    )


@router.get("/projects/{project_id}", response_model=ProjectRead, responses=NOT_FOUND)
async def get_project(project: ReadableProject) -> ProjectRead:
    """One project: yours, or anyone's public one (no sign-in needed for public projects)."""
    return ProjectRead.model_validate(project)


@router.patch("/projects/{project_id}", response_model=ProjectRead, responses=WRITE_ERRORS)
async def update_project(
    project: WritableProject,
    body: ProjectUpdate,
    session: SessionDep,
    principal: OptionalPrincipal,
    hooks: ProjectHooksDep,
) -> ProjectRead:
    """Change a project; only the fields sent change. Members of its account only. A new
    `sandbox_network` applies to the project's existing sandbox too (a running local sandbox
    restarts: its processes end, `/workspace` stays)."""
    updated = await service.update_project(
        session, principal, project=project, data=body, hooks=hooks
    )
    return ProjectRead.model_validate(updated)


@router.delete("/projects/{project_id}", status_code=204, responses=WRITE_ERRORS)
async def delete_project(
    project: WritableProject,
    session: SessionDep,
    principal: OptionalPrincipal,
    hooks: ProjectHooksDep,
) -> Response:
    """Delete a project with all its threads and messages; its active run is stopped first.
    Members of its account only."""
    await service.delete_project(session, principal, project=project, hooks=hooks)
    return Response(status_code=204)


# -- threads -------------------------------------------------------------------------------------


@router.post(
    "/threads",
    status_code=201,
    response_model=ThreadRead,
    responses={
        **WRITE_ERRORS,
        404: {
            "model": ErrorBody,
            "description": "`project_id` (or `X-Account-Id`) not found or not yours, or "
            "`agent_id` names no agent (`not_found`).",
        },
    },
)
async def create_thread(
    body: ThreadCreate, session: SessionDep, principal: CurrentPrincipal, account_id: ActingAccount
) -> ThreadRead:
    """Create a thread.

    With `project_id` the thread joins that project (and its account; you must be a member).
    Without it a new project is created in the acting account, named after the thread
    (or "New project").
    """
    thread = await service.create_thread(session, principal, account_id=account_id, data=body)
    return ThreadRead.model_validate(thread)


@router.get("/threads", response_model=ThreadList, responses={**LIST_ERRORS, **NOT_FOUND})
async def list_threads(
    session: SessionDep,
    principal: CurrentPrincipal,
    account_id: ActingAccount,
    project_id: Annotated[
        str | None, Query(description="only this project's threads (404 if you cannot read it)")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ThreadList:
    """Threads of the acting account, newest first, optionally of one project.

    Lists only ever show the acting account's threads: to list a team project's threads, send
    that team's `X-Account-Id`.
    """
    page = await service.list_threads(
        session,
        principal,
        account_id=account_id,
        project_id=project_id,
        cursor=cursor,
        limit=limit,
    )
    return ThreadList(
        threads=[ThreadRead.model_validate(t) for t in page.items], next_cursor=page.next_cursor
    )


@router.get("/threads/{thread_id}", response_model=ThreadRead, responses=NOT_FOUND)
async def get_thread(thread: ReadableThread) -> ThreadRead:
    """One thread: yours, or one in a public project (no sign-in needed)."""
    return ThreadRead.model_validate(thread)


@router.patch("/threads/{thread_id}", response_model=ThreadRead, responses=WRITE_ERRORS)
async def update_thread(
    thread: WritableThread, body: ThreadUpdate, session: SessionDep, principal: OptionalPrincipal
) -> ThreadRead:
    """Change a thread's `name`, `agent_id` or `metadata`; only the fields sent change."""
    updated = await service.update_thread(session, principal, thread=thread, data=body)
    return ThreadRead.model_validate(updated)


@router.delete("/threads/{thread_id}", status_code=204, responses=WRITE_ERRORS)
async def delete_thread(
    thread: WritableThread,
    session: SessionDep,
    principal: OptionalPrincipal,
    hooks: ProjectHooksDep,
) -> Response:
    """Delete a thread with all its messages; its active run is stopped first. Members of its
    account only."""
    await service.delete_thread(session, principal, thread=thread, hooks=hooks)
    return Response(status_code=204)


# -- messages ------------------------------------------------------------------------------------


@router.get(
    "/threads/{thread_id}/messages",
    response_model=MessageList,
    responses={**LIST_ERRORS, **NOT_FOUND},
)
async def list_messages(
    thread: ReadableThread,
    session: SessionDep,
    principal: OptionalPrincipal,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> MessageList:
    """The thread's history, oldest → newest by `seq` (1, 2, 3, … per thread).

    `stream_cursor`, passed as `Last-Event-ID` to `GET /api/threads/{thread_id}/stream`,
    continues the stream right after this history (null: the thread has no run events yet).
    """
    page = await service.list_messages(
        session, principal, thread=thread, cursor=cursor, limit=limit
    )
    return MessageList(
        messages=[MessageRead.model_validate(m) for m in page.messages],
        next_cursor=page.next_cursor,
        stream_cursor=page.stream_cursor,
    )


@router.post(
    "/threads/{thread_id}/messages",
    status_code=201,
    response_model=MessageRead,
    responses={
        **WRITE_ERRORS,
        413: {
            "model": ErrorBody,
            "description": "The JSON-encoded content exceeds SHOAL_MAX_MESSAGE_BYTES "
            "(`payload_too_large`).",
        },
    },
)
async def add_message(
    thread: WritableThread,
    body: MessageCreate,
    session: SessionDep,
    principal: OptionalPrincipal,
    max_bytes: MaxMessageBytes,
) -> MessageRead:
    """Add a message to the thread without starting a run.

    `content` is a text (stored as `{"role": "user", "content": text}`) or an OpenAI-style user
    message whose `content` is a text or a list of `text` / `image_url` parts. Only `type:
    "user"` is accepted from clients. Members of the thread's account only.
    """
    message = await service.add_message(
        session, principal, thread=thread, data=body, max_bytes=max_bytes
    )
    return MessageRead.model_validate(message)
