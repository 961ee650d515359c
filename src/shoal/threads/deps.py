"""Load-and-check dependencies for project and thread routes.

Each alias loads the resource named in the path, checks the caller's access and raises:
``Readable*`` lets members and — for public projects — anyone (even anonymous) through;
``Writable*`` only members (401 anonymous / 403 non-member on a public project, 404 otherwise).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shoal.accounts.deps import OptionalPrincipal
from shoal.config import Settings
from shoal.db.deps import SessionDep
from shoal.db.models import Project, Thread
from shoal.threads import service
from shoal.threads.service import ProjectHooks


async def _readable_project(
    project_id: str, session: SessionDep, principal: OptionalPrincipal
) -> Project:
    return await service.load_project(session, principal, project_id, write=False)


async def _writable_project(
    project_id: str, session: SessionDep, principal: OptionalPrincipal
) -> Project:
    return await service.load_project(session, principal, project_id, write=True)


async def _readable_thread(
    thread_id: str, session: SessionDep, principal: OptionalPrincipal
) -> Thread:
    return await service.load_thread(session, principal, thread_id, write=False)


async def _writable_thread(
    thread_id: str, session: SessionDep, principal: OptionalPrincipal
) -> Thread:
    return await service.load_thread(session, principal, thread_id, write=True)


def _max_message_bytes(request: Request) -> int:
    settings: Settings = request.app.state.settings
    return settings.max_message_bytes


def _project_hooks(request: Request) -> ProjectHooks:
    """What upper layers registered to run when a project or thread changes (the runs layer
    stops active runs before a delete). Registered on ``app.state.project_hooks`` by the app."""
    hooks: ProjectHooks | None = getattr(request.app.state, "project_hooks", None)
    return hooks or ProjectHooks()


ReadableProject = Annotated[Project, Depends(_readable_project)]
WritableProject = Annotated[Project, Depends(_writable_project)]
ReadableThread = Annotated[Thread, Depends(_readable_thread)]
WritableThread = Annotated[Thread, Depends(_writable_thread)]
MaxMessageBytes = Annotated[int, Depends(_max_message_bytes)]
ProjectHooksDep = Annotated[ProjectHooks, Depends(_project_hooks)]
