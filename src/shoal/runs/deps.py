"""Dependencies for run routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shoal.accounts.deps import OptionalPrincipal, OptionalQueryTokenPrincipal
from shoal.db.deps import ReadSessionDep, SessionDep
from shoal.db.models import AgentRun, Thread
from shoal.runs import service
from shoal.runs.runtime import Runtime
from shoal.threads import service as thread_service


async def _runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool (a hand-off, and a
    # queue under load) — while the request may already hold the SQLite write connection.
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _readable_run(
    agent_run_id: str, session: ReadSessionDep, principal: OptionalPrincipal
) -> AgentRun:
    return await service.load_run(session, principal, agent_run_id, write=False)


async def _writable_run(
    agent_run_id: str, session: SessionDep, principal: OptionalPrincipal
) -> AgentRun:
    return await service.load_run(session, principal, agent_run_id, write=True)


async def _streamable_run(
    agent_run_id: str, session: ReadSessionDep, principal: OptionalQueryTokenPrincipal
) -> AgentRun:
    return await service.load_run(session, principal, agent_run_id, write=False)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
ReadableRun = Annotated[AgentRun, Depends(_readable_run)]
WritableRun = Annotated[AgentRun, Depends(_writable_run)]
StreamableRun = Annotated[AgentRun, Depends(_streamable_run)]


async def _streamable_thread(
    thread_id: str, session: ReadSessionDep, principal: OptionalQueryTokenPrincipal
) -> Thread:
    return await thread_service.load_thread(session, principal, thread_id, write=False)


StreamableThread = Annotated[Thread, Depends(_streamable_thread)]
