"""Run API logic: start (with idempotency and multitask strategies), stop, read, list.

Durable acceptance: the run row (``queued``), the user message and the first events commit
before the HTTP response; the wake-up is sent after that commit.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shoal.agents import service as agent_service
from shoal.auth.principal import Principal
from shoal.billing import service as billing
from shoal.db.models import AgentRun, IdempotencyKey, Project, Thread
from shoal.db.repository import Page
from shoal.errors import ConcurrencyLimit, Forbidden, IdempotencyConflict, NotFound, RunActive
from shoal.kit.ids import parse_id
from shoal.kit.time import utcnow
from shoal.runs import lifecycle
from shoal.runs.repository import RunRepository
from shoal.runs.runtime import Runtime, control_channel, thread_channel
from shoal.runs.schemas import RunOptions, RunRead, RunStart, RunUsage
from shoal.runs.stream import DELETED
from shoal.threads import service as thread_service
from shoal.threads.repository import MessageRepository, ThreadRepository
from shoal.threads.service import ProjectHooks

IDEMPOTENCY_TTL = timedelta(hours=24)
STOP = "stop"


def run_read(run: AgentRun) -> RunRead:
    return RunRead(
        id=run.id,
        thread_id=run.thread_id,
        project_id=run.project_id,
        status=run.status,
        model_name=run.model_name,
        agent_id=run.agent_id,
        attempt=run.attempt,
        error=run.error,
        finish_reason=run.finish_reason,
        usage=RunUsage(
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            cost_usd=run.cost_micro_usd / 1_000_000,
        ),
        stop_requested_at=run.stop_requested_at,
        started_at=run.started_at,
        completed_at=run.completed_at,
        created_at=run.created_at,
        metadata=run.meta,
    )


def request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def accept_once(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    route: str,
    key: str | None,
    request: dict[str, Any],
    accept: Callable[[], Awaitable[BaseModel]],
) -> dict[str, Any]:
    """Run ``accept`` once per ``Idempotency-Key``: the same key and request give the stored
    answer again; the same key with another request is 409 ``idempotency_conflict``."""
    body_hash = request_hash(request)
    if key:
        stored = await remembered(
            session, account_id=account_id, route=route, key=key, body_hash=body_hash
        )
        if stored is not None:
            return stored
    response = (await accept()).model_dump(mode="json")
    if key:
        await remember(
            session,
            account_id=account_id,
            route=route,
            key=key,
            body_hash=body_hash,
            response=response,
        )
    return response


async def remembered(
    session: AsyncSession, *, account_id: uuid.UUID, route: str, key: str, body_hash: str
) -> dict[str, Any] | None:
    """The stored response for this key, or None. Same key with another body → 409."""
    record = await RunRepository(session).idempotency_get(
        account_id, route, key, newer_than=utcnow() - IDEMPOTENCY_TTL
    )
    if record is None:
        return None
    if record.request_hash != body_hash:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request body."
        )
    return dict(record.response)


async def remember(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    route: str,
    key: str,
    body_hash: str,
    response: dict[str, Any],
) -> None:
    try:
        async with session.begin_nested():
            await RunRepository(session).idempotency_put(
                IdempotencyKey(
                    account_id=account_id,
                    route=route,
                    key=key,
                    request_hash=body_hash,
                    status_code=202,
                    response=response,
                ),
                expired_before=utcnow() - IDEMPOTENCY_TTL,
            )
    except IntegrityError:
        # A concurrent request with the same key won: fail this one, its run rolls back.
        raise IdempotencyConflict(
            "A request with this Idempotency-Key is already being processed; retry it."
        ) from None


async def _make_room(
    session: AsyncSession, runtime: Runtime, *, thread: Thread, options: RunOptions
) -> None:
    """Apply the multitask strategy against the project's active runs."""
    repo = RunRepository(session)
    active = await repo.active_in_project(thread.project_id)
    if not active:
        return
    if options.multitask_strategy == "reject":
        raise RunActive(
            "A run is already active in this project.",
            extra={"active_run_id": str(active[0].id)},
        )
    if options.multitask_strategy == "interrupt":
        for run in active:
            await stop(session, runtime, run=run)


async def _check_account_cap(
    session: AsyncSession, runtime: Runtime, account_id: uuid.UUID
) -> None:
    settings = runtime.settings
    cap = await billing.concurrency_cap(session, account_id, settings=settings)
    limit = cap if cap is not None else settings.max_active_runs_per_account
    if settings.concurrency_overflow != "reject":
        return
    active = await RunRepository(session).count_active_for_account(account_id)
    if active >= limit:
        raise ConcurrencyLimit(
            f"This account already has {active} active runs (limit {limit}); "
            "wait for one to finish.",
            retry_after=max(1, int(settings.run_heartbeat_seconds)),
        )


async def initiate(
    session: AsyncSession,
    principal: Principal,
    runtime: Runtime,
    *,
    account_id: uuid.UUID,
    body: RunStart,
    uploads: list[tuple[str, bytes]],
) -> tuple[Thread, AgentRun]:
    """A new project and thread named after the prompt, its ``uploads`` (``(base name, bytes)``)
    in the project's ``/workspace`` and listed in the prompt, and a run on it. A start that is
    refused deletes the new sandbox again (no orphan workspace)."""
    prompt = body.prompt or ""
    thread = await thread_service.create_thread_for_prompt(
        session, principal, account_id=account_id, prompt=prompt
    )
    if not uploads:
        return thread, await start(session, principal, runtime, thread=thread, body=body)
    project = await thread_service.load_project(session, principal, thread.project_id, write=True)
    uploaded = await runtime.sandboxes.upload_in(session, project, uploads)
    listing = "\n".join(f"[Uploaded File: {path}]" for path in uploaded.paths)
    with_files = body.model_copy(update={"prompt": f"{prompt}\n\n{listing}"})
    try:
        run = await start(session, principal, runtime, thread=thread, body=with_files)
    except BaseException:
        await runtime.sandboxes.delete_at_provider(uploaded.sandbox_id, uploaded.provider_id)
        raise
    return thread, run


async def start(
    session: AsyncSession,
    principal: Principal,
    runtime: Runtime,
    *,
    thread: Thread,
    body: RunStart,
    prompt_content: dict[str, Any] | None = None,
) -> AgentRun:
    """Accept a run: user message, run row and first events in this transaction."""
    agent = await agent_service.resolve(
        session,
        account_id=thread.account_id,
        requested_agent_id=body.agent_id,
        thread_agent_id=thread.agent_id,
    )
    model_name = body.model_name or agent.model_name or runtime.settings.effective_default_model
    await billing.check_can_start(
        session, settings=runtime.settings, account_id=thread.account_id, model_name=model_name
    )
    await _make_room(session, runtime, thread=thread, options=body)
    await _check_account_cap(session, runtime, thread.account_id)
    options = body.model_dump(exclude={"prompt", "model_name", "agent_id", "metadata"})
    options["max_iterations"] = body.max_iterations or runtime.settings.engine_max_iterations
    content = prompt_content or (
        {"role": "user", "content": body.prompt} if body.prompt is not None else None
    )
    first_events = 1 if content is None else 2  # `queued`, then the user message
    run = await RunRepository(session).add(
        AgentRun(
            thread_id=thread.thread_id,
            project_id=thread.project_id,
            account_id=thread.account_id,
            agent_id=agent.agent_id,
            model_name=model_name,
            options=options,
            meta=body.metadata,
            status="queued",
            last_wakeup_at=utcnow(),
            last_event_seq=first_events,  # a new run's seqs 1…n: no allocation needed
        )
    )
    events: list[tuple[str, dict[str, Any]]] = [("run_status", lifecycle.status_data(run))]
    # Claimed before the message locks the thread's row: the claim may wait for the project's
    # running run's transaction, and that one may be waiting for this thread's row.
    complete = await runtime.claim_at_start(session, run.id) if runtime.claim_at_start else None
    if content is not None:
        message = await MessageRepository(session).add(
            thread.thread_id, type="user", content=content, agent_run_id=run.id
        )
        from shoal.threads.schemas import MessageRead

        events.append(
            ("message", {"message": MessageRead.model_validate(message).model_dump(mode="json")})
        )
    await lifecycle.write_events(session, runtime, run, events, first_seq=1, allocated=True)
    if complete is not None:
        await complete()  # reads the history (with this prompt), writes `running`
    else:
        runtime.after_commit_wake(session, [run.id])
    runtime.after_commit_signal(session, thread_channel(thread.thread_id), str(run.id))
    return run


async def stop(session: AsyncSession, runtime: Runtime, *, run: AgentRun) -> bool:
    """Stop ``run``. A queued run stops at once; a running one is flagged and signalled (the
    worker stops within 2 s; its heartbeat reads the flag if the signal is lost). Returns
    whether anything changed (False for a finished run)."""
    repo = RunRepository(session)
    run = await repo.get(run.id, for_update=True) or run
    if run.status in lifecycle.TERMINAL:
        return False
    if run.status == "queued":
        await repo.request_stop(run.id)
        await lifecycle.finish(session, runtime, run, status="stopped")
        return True
    if run.stop_requested_at is None:
        await repo.request_stop(run.id)
        await repo.refresh(run)
    runtime.after_commit_signal(session, control_channel(run.id), STOP)
    return True


async def stop_active(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project_id: uuid.UUID | None = None,
    thread_id: uuid.UUID | None = None,
) -> None:
    """Stop every active run of a project (or of one thread) — before deleting it."""
    repo = RunRepository(session)
    runs = (
        await repo.active_in_project(project_id)
        if project_id
        else await repo.active_in_thread(
            thread_id  # type: ignore[arg-type]
        )
    )
    for run in runs:
        await stop(session, runtime, run=run)


def project_hooks(runtime: Runtime) -> ProjectHooks:
    """The runs layer's part in deleting projects and threads: stop their runs first; a
    project's sandbox (and its workspace) goes with it; once the delete commits, the
    thread's open streams (thread and run streams, in every process) are told to end. A
    project's new ``sandbox_network`` reaches its sandbox once the update commits."""

    async def before_project(session: AsyncSession, project_id: uuid.UUID) -> None:
        await stop_active(session, runtime, project_id=project_id)
        await runtime.sandboxes.before_project_delete(session, project_id)
        for thread_id in await ThreadRepository(session).ids_in_project(project_id):
            runtime.after_commit_signal(session, thread_channel(thread_id), DELETED)

    async def before_thread(session: AsyncSession, thread_id: uuid.UUID) -> None:
        await stop_active(session, runtime, thread_id=thread_id)
        runtime.after_commit_signal(session, thread_channel(thread_id), DELETED)

    async def after_project_update(
        session: AsyncSession, project: Project, changed: dict[str, Any]
    ) -> None:
        if "sandbox_network" in changed:
            await runtime.sandboxes.network_changed(session, project)

    return ProjectHooks(
        before_project_delete=(before_project,),
        before_thread_delete=(before_thread,),
        after_project_update=(after_project_update,),
    )


async def load_run(
    session: AsyncSession, principal: Principal | None, run_id: str, *, write: bool
) -> AgentRun:
    parsed = parse_id(run_id)
    loaded = (
        None if parsed is None else await RunRepository(session).get_readable(principal, parsed)
    )
    if loaded is None:
        raise NotFound("Run not found.")
    run, is_member = loaded
    if write and not is_member:
        if principal is None:
            from shoal.errors import Unauthorized

            raise Unauthorized()
        raise Forbidden("Only members of the project's account can change its runs.")
    return run


async def page_for_thread(
    session: AsyncSession, *, thread: Thread, limit: int, cursor: str | None
) -> Page[AgentRun]:
    return await RunRepository(session).page_for_thread(
        thread.thread_id, limit=limit, cursor=cursor
    )
