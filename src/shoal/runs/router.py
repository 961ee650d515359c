"""Run routes: start, initiate, status, list, stop, and the two SSE streams (DESIGN.md §3–4)."""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Query, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from shoal.accounts.deps import ActingAccount, CurrentPrincipal
from shoal.db.deps import ListQuery, ReadSessionDep, SessionDep
from shoal.errors import BadRequest, Gone, PayloadTooLarge, ValidationFailed
from shoal.kit.streams import parse_thread_event_id
from shoal.kit.time import utcnow
from shoal.runs import service
from shoal.runs.deps import ReadableRun, RuntimeDep, StreamableRun, StreamableThread, WritableRun
from shoal.runs.lifecycle import TERMINAL
from shoal.runs.repository import RunRepository
from shoal.runs.schemas import InitiateStarted, RunList, RunRead, RunStart, RunStarted
from shoal.runs.stream import Position, live_start, run_events, thread_events
from shoal.threads.deps import ReadableThread, WritableThread

router = APIRouter(tags=["runs"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found, or not yours"}}
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=255, description="same key + same body → same run"),
]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)]


@router.post(
    "/threads/{thread_id}/agent/start",
    status_code=202,
    response_model=RunStarted,
    responses={**_NOT_FOUND, 409: {"description": "run_active / idempotency_conflict"}},
)
async def start_run(
    thread: WritableThread,
    body: RunStart,
    session: SessionDep,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    """Start an agent run on the thread. The run, the prompt (as a user message) and the first
    events are stored before this answers 202; stream them from `/api/agent-run/{id}/stream`."""

    async def accept() -> RunStarted:
        run = await service.start(session, principal, runtime, thread=thread, body=body)
        return RunStarted(agent_run_id=run.id)

    return await service.accept_once(
        session,
        account_id=thread.account_id,
        route="start",
        key=idempotency_key,
        request={"thread": str(thread.thread_id), **body.model_dump(mode="json")},
        accept=accept,
    )


@router.post(
    "/agent/initiate",
    status_code=202,
    response_model=InitiateStarted,
    responses={409: {"description": "idempotency_conflict"}},
)
async def initiate_run(
    session: SessionDep,
    principal: CurrentPrincipal,
    account_id: ActingAccount,
    runtime: RuntimeDep,
    prompt: Annotated[str, Form(min_length=1)],
    model_name: Annotated[str | None, Form()] = None,
    agent_id: Annotated[str | None, Form()] = None,
    enable_thinking: Annotated[bool, Form()] = False,
    reasoning_effort: Annotated[str | None, Form()] = None,
    enable_context_manager: Annotated[bool, Form()] = True,
    max_iterations: Annotated[int | None, Form()] = None,
    multitask_strategy: Annotated[str, Form()] = "interrupt",
    metadata: Annotated[str | None, Form(description="a JSON object")] = None,
    files: Annotated[
        list[UploadFile] | None,
        File(description="files for the new project's /workspace (listed in the prompt)"),
    ] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    """Create a project and a thread for `prompt` (+ `files` in its sandbox's `/workspace`,
    listed in the prompt as `[Uploaded File: /workspace/x]`) and start a run on it."""
    uploads = await _read_uploads(files or [], runtime.settings.sandbox_upload_max_bytes)
    fields: dict[str, Any] = {
        "prompt": prompt,
        "model_name": model_name,
        "agent_id": agent_id,
        "enable_thinking": enable_thinking,
        "reasoning_effort": reasoning_effort,
        "enable_context_manager": enable_context_manager,
        "max_iterations": max_iterations,
        "multitask_strategy": multitask_strategy,
    }
    try:
        fields["metadata"] = json.loads(metadata) if metadata else {}
        body = RunStart.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None
    except ValueError:
        raise ValidationFailed(
            "metadata: must be a JSON object",
            errors=[{"loc": ["body", "metadata"], "msg": "must be a JSON object"}],
        ) from None

    async def accept() -> InitiateStarted:
        thread, run = await service.initiate(
            session, principal, runtime, account_id=account_id, body=body, uploads=uploads
        )
        return InitiateStarted(
            agent_run_id=run.id, project_id=thread.project_id, thread_id=thread.thread_id
        )

    return await service.accept_once(
        session,
        account_id=account_id,
        route="initiate",
        key=idempotency_key,
        request={
            **body.model_dump(mode="json"),
            "files": [[name, hashlib.sha256(data).hexdigest()] for name, data in uploads],
        },
        accept=accept,
    )


async def _read_uploads(files: list[UploadFile], limit: int) -> list[tuple[str, bytes]]:
    """``(base name, bytes)`` of each upload; a nameless, hidden-path or oversized one → 4xx."""
    out: list[tuple[str, bytes]] = []
    for upload in files:
        name = posixpath.basename((upload.filename or "").replace("\\", "/")).strip()
        if name in ("", ".", "..") or "\x00" in name:
            raise BadRequest(f"Uploaded file {upload.filename!r} needs a usable file name.")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"{name} is larger than the upload limit of {limit} bytes.")
        out.append((name, data))
    return out


@router.get("/threads/{thread_id}/agent-runs", response_model=RunList, responses=_NOT_FOUND)
async def list_runs(thread: ReadableThread, session: SessionDep, params: ListQuery) -> RunList:
    """Runs of the thread, newest first."""
    page = await service.page_for_thread(
        session, thread=thread, limit=params.limit, cursor=params.cursor
    )
    return RunList(
        agent_runs=[service.run_read(r) for r in page.items], next_cursor=page.next_cursor
    )


@router.get("/agent-run/{agent_run_id}", response_model=RunRead, responses=_NOT_FOUND)
async def get_run(run: ReadableRun) -> RunRead:
    """A run's status, error, finish reason and usage."""
    return service.run_read(run)


@router.post(
    "/agent-run/{agent_run_id}/stop",
    status_code=202,
    response_model=RunRead,
    responses={**_NOT_FOUND, 200: {"model": RunRead, "description": "already finished"}},
)
async def stop_run(run: WritableRun, session: SessionDep, runtime: RuntimeDep) -> Any:
    """Stop a run: a queued one at once (`stopped`), a running one within 2 s (the answer shows
    `running` with `stop_requested_at`). Stopping a finished run changes nothing (200)."""
    changed = await service.stop(session, runtime, run=run)
    fresh = await RunRepository(session).get(run.id)
    body = service.run_read(fresh or run)
    if not changed:
        return JSONResponse(body.model_dump(mode="json"), status_code=200)
    return body


def _cursor(after: str | None, last_event_id: str | None) -> str | None:
    return last_event_id if last_event_id not in (None, "") else after


def _sse_response(
    events: AsyncIterator[ServerSentEvent], runtime: RuntimeDep
) -> EventSourceResponse:
    return EventSourceResponse(
        events,
        ping=runtime.settings.sse_ping_seconds,
        sep="\n",
        ping_message_factory=lambda: ServerSentEvent(comment="ping", sep="\n"),
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )


def _sse(event_id: str, event: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps(event, separators=(",", ":"), ensure_ascii=False),
        event=event["type"],
        id=event_id,
        sep="\n",
    )


@router.get(
    "/agent-run/{agent_run_id}/stream",
    response_class=EventSourceResponse,
    responses={
        **_NOT_FOUND,
        204: {"description": "cursor at or past the end of a finished run"},
        410: {"description": "events_expired"},
    },
)
async def stream_run(
    run: StreamableRun,
    runtime: RuntimeDep,
    after: Annotated[str | None, Query(description="resume after this event id")] = None,
    last_event_id: LastEventId = None,
) -> Response:
    """The run's events as Server-Sent Events: replayed from the cursor, then live, closing
    after the terminal `run_status`. Resume with `Last-Event-ID` or `?after=`."""
    raw = _cursor(after, last_event_id)
    try:
        cursor = int(raw) if raw else 0
    except ValueError:
        raise BadRequest("The stream cursor must be an event id (an integer).") from None
    cursor = max(cursor, 0)
    _check_retention(run, runtime)
    if run.status in TERMINAL and cursor >= run.last_event_seq:
        return Response(status_code=204)

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for event in run_events(
            runtime, run, after=cursor, idle_check_seconds=runtime.settings.sse_ping_seconds
        ):
            yield _sse(str(event["seq"]), event)

    return _sse_response(events(), runtime)


def _check_retention(run: Any, runtime: RuntimeDep) -> None:
    retention = timedelta(days=runtime.settings.event_retention_days)
    if run.completed_at is not None and run.completed_at < utcnow() - retention:
        raise Gone("This run's events are past their retention period.")


@router.get(
    "/threads/{thread_id}/stream",
    response_class=EventSourceResponse,
    responses=_NOT_FOUND,
)
async def stream_thread(
    thread: StreamableThread,
    runtime: RuntimeDep,
    session: ReadSessionDep,
    after: Annotated[
        str | None, Query(description="an event id, or `now` for the live tail")
    ] = None,
    last_event_id: LastEventId = None,
) -> Response:
    """Events of all the thread's runs in order, staying open for new runs. Event ids are
    opaque; resume with `Last-Event-ID` (or the messages list's `stream_cursor`)."""
    raw = _cursor(after, last_event_id)
    position: Position = None
    if raw == "now":  # after what is already published live (stored or not)
        runs = await RunRepository(session).runs_of_thread(thread.thread_id)
        position = await live_start(runtime, runs)
    elif raw:
        position = parse_thread_event_id(raw)
        if position is None:
            raise BadRequest("The stream cursor is not valid; use an event id from this stream.")
    thread_id = thread.thread_id

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for event_id, event in thread_events(
            runtime,
            thread_id,
            position=position,
            idle_check_seconds=runtime.settings.sse_ping_seconds,
        ):
            yield _sse(event_id, event)

    return _sse_response(events(), runtime)
