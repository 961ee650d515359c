"""Operator commands: `shoal runs list|show|stop` and `shoal accounts list|set-plan|suspend|
unsuspend` (docs/operations.md).

They talk to the database directly (``SHOAL_DATABASE_URL``), with no tenancy: whoever can run
them can read the database anyway. The logic lives in ``shoal.runs.admin``,
``shoal.accounts.admin`` and ``shoal.billing.admin``; this module only parses and prints.
Heavy imports happen inside the commands so that `shoal --help` stays instant.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shoal.config import Settings
    from shoal.runs.runtime import Runtime

T = TypeVar("T")
out = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
"""Tables: a terminal's own width; piped or captured output wide enough that ids (which
operators copy) are never cut short."""
runs_app = typer.Typer(help="Inspect and stop runs of every account.", no_args_is_help=True)
accounts_app = typer.Typer(
    help="List accounts, set their plan, suspend them.", no_args_is_help=True
)


def _when(value: datetime | None) -> str:
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _execute(work: Callable[[Settings, Any], Awaitable[T]], *, runtime: bool) -> T:
    """Run ``work(settings, session | (session, runtime))`` in one committed unit of work on
    the configured database; a ShoalError or bad plans file becomes one line and exit 1."""
    import asyncio

    from shoal.cli import _accounts_database, fail, settings_or_exit
    from shoal.db.session import unit_of_work
    from shoal.errors import ConfigError, ShoalError
    from shoal.runs.admin import operator_runtime

    settings = settings_or_exit()

    async def go() -> T:
        async with _accounts_database(settings) as factory:
            if not runtime:
                async with unit_of_work(factory) as session:
                    return await work(settings, session)
            async with (
                operator_runtime(settings, factory) as run_time,
                unit_of_work(factory) as session,
            ):
                return await work(settings, (session, run_time))

    try:
        return asyncio.run(go())
    except ShoalError as exc:
        fail(exc.message, 1)
    except ConfigError as exc:
        fail("; ".join(exc.problems), 1)


def _in_session(work: Callable[[Settings, AsyncSession], Awaitable[T]]) -> T:
    return _execute(work, runtime=False)


def _with_runtime(work: Callable[[AsyncSession, Runtime], Awaitable[T]]) -> tuple[T, Settings]:
    """For changes that signal runs (stop): the session commits before the runtime closes."""

    async def call(settings: Settings, pair: tuple[AsyncSession, Runtime]) -> tuple[T, Settings]:
        return await work(*pair), settings

    return _execute(call, runtime=True)


# -- runs -----------------------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    status: Annotated[
        str | None,
        typer.Option(help="queued, running, completed, failed, stopped, or active (comma list)."),
    ] = None,
    account: Annotated[str | None, typer.Option(help="Only this account's runs.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
) -> None:
    """List runs of every account, newest first."""
    from rich.table import Table

    from shoal.runs import admin

    async def load(_: Settings, session: AsyncSession) -> list[Any]:
        runs = await admin.list_runs(session, status=status, account_id=account, limit=limit)
        return list(runs)

    runs = _in_session(load)
    table = Table(title=f"{len(runs)} run(s)")
    for column in ("run", "status", "account", "model", "attempt", "created", "finished"):
        ident = column in ("run", "account")
        table.add_column(column, no_wrap=ident, min_width=36 if ident else None)
    for run in runs:
        status_text = run.status + (
            " (stop requested)" if run.stop_requested_at and run.status == "running" else ""
        )
        table.add_row(
            str(run.id),
            status_text,
            str(run.account_id),
            run.model_name,
            str(run.attempt),
            _when(run.created_at),
            _when(run.completed_at),
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    events: Annotated[int, typer.Option(help="How many last event lines to show.")] = 10,
) -> None:
    """Show a run's fields and a summary of its last events (deltas folded)."""
    from rich.table import Table

    from shoal.runs import admin

    async def load(_: Settings, session: AsyncSession) -> admin.RunDetail:
        return await admin.show_run(session, run_id, last=events)

    detail = _in_session(load)
    run = detail.run
    fields = Table(title=f"run {run.id}", show_header=False)
    fields.add_column("field", style="bold")
    fields.add_column("value")
    rows: list[tuple[str, Any]] = [
        ("status", run.status),
        ("account", detail.account_id),
        ("project", run.project_id),
        ("thread", run.thread_id),
        ("model", run.model_name),
        ("agent", run.agent_id),
        ("attempt", run.attempt),
        ("worker", detail.worker_id),
        ("lease expires", _when(detail.lease_expires_at)),
        ("finish reason", run.finish_reason),
        ("error", run.error and f"{run.error.code}: {run.error.message}"),
        (
            "usage",
            f"{run.usage.prompt_tokens} in / {run.usage.completion_tokens} out, "
            f"${run.usage.cost_usd:.6f}",
        ),
        ("stop requested", _when(run.stop_requested_at)),
        ("created", _when(run.created_at)),
        ("started", _when(run.started_at)),
        ("finished", _when(run.completed_at)),
    ]
    for name, value in rows:
        fields.add_row(name, "—" if value is None else str(value))
    out.print(fields)
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(detail.event_counts.items()))
    out.print(f"[bold]events:[/] {sum(detail.event_counts.values())} ({counts or 'none'})")
    table = Table(title=f"last {len(detail.last_events)} event line(s)")
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("at", no_wrap=True)
    table.add_column("summary")
    for line in detail.last_events:
        seq = str(line.last_seq) if line.count == 1 else f"{line.first_seq}–{line.last_seq}"
        kind = line.type if line.count == 1 else f"{line.type} ×{line.count}"
        table.add_row(seq, kind, f"{line.created_at:%H:%M:%S}", line.summary)
    out.print(table)


@runs_app.command("stop")
def runs_stop(run_id: Annotated[str, typer.Argument(help="The run's id.")]) -> None:
    """Stop a run: a queued one at once, a running one within a heartbeat (the API's path)."""
    from shoal.runs import admin

    async def stop(session: AsyncSession, runtime: Runtime) -> tuple[Any, bool]:
        return await admin.stop_run(session, runtime, run_id)

    (run, changed), settings = _with_runtime(stop)
    if not changed:
        out.print(f"run {run.id} had already finished ([bold]{run.status}[/]); nothing to stop")
    elif run.status == "stopped":
        out.print(f"[green]stopped[/] run {run.id} (it was queued)")
    else:
        out.print(
            f"[green]stop requested[/] for run {run.id}: its worker stops it within "
            f"{settings.run_heartbeat_seconds:g} s (at once when SHOAL_REDIS_URL is set)"
        )


# -- accounts -------------------------------------------------------------------------------------


@accounts_app.command("list")
def accounts_list(
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    suspended: Annotated[bool, typer.Option("--suspended", help="Only suspended ones.")] = False,
) -> None:
    """List accounts with their owner, member count, plan and suspension."""
    from rich.table import Table

    from shoal.billing import admin as billing_admin

    async def load(settings: Settings, session: AsyncSession) -> list[Any]:
        rows = await billing_admin.accounts_overview(
            session, settings=settings, limit=limit, suspended_only=suspended
        )
        return list(rows)

    rows = _in_session(load)
    table = Table(title=f"{len(rows)} account(s)")
    for column in ("account", "name", "kind", "owner", "members", "plan", "suspended", "created"):
        ident = column == "account"
        table.add_column(column, no_wrap=ident, min_width=36 if ident else None)
    for item in rows:
        account = item.row.account
        suspended_text = "—"
        if account.suspended_at is not None:
            reason = f": {account.suspended_reason}" if account.suspended_reason else ""
            suspended_text = f"[red]since {_when(account.suspended_at)}{reason}[/]"
        table.add_row(
            str(account.account_id),
            account.name,
            "personal" if account.personal else "team",
            item.row.owner_email or "—",
            str(item.row.members),
            item.plan,
            suspended_text,
            _when(account.created_at),
        )
    out.print(table)


@accounts_app.command("set-plan")
def accounts_set_plan(
    account_id: Annotated[str, typer.Argument(help="The account's id.")],
    plan: Annotated[str, typer.Argument(help="A plan of the plans file (SHOAL_PLANS_FILE).")],
) -> None:
    """Put an account on a plan of the plans file (not for Stripe-billed accounts)."""
    from shoal.billing import admin as billing_admin

    async def change(settings: Settings, session: AsyncSession) -> billing_admin.PlanChange:
        return await billing_admin.set_plan(
            session, settings=settings, account_id=account_id, plan=plan
        )

    result = _in_session(change)
    out.print(f"[green]account {result.account_id}[/]: plan {result.previous} → {result.plan}")
    if not result.billing_enabled:
        out.print(
            "[yellow]billing is off (SHOAL_BILLING_ENABLED=false): every account is unlimited "
            "until it is turned on; the plan applies from then.[/]"
        )


@accounts_app.command("suspend")
def accounts_suspend(
    account_id: Annotated[str, typer.Argument(help="The account's id.")],
    reason: Annotated[
        str | None, typer.Option(help="Why (shown to its members in the 403 message).")
    ] = None,
) -> None:
    """Suspend an account: stop its active runs; refuse its creates, runs and API keys."""
    from shoal.runs import admin

    async def suspend(session: AsyncSession, runtime: Runtime) -> admin.Suspension:
        return await admin.suspend_account(session, runtime, account_id, reason=reason)

    result, _ = _with_runtime(suspend)
    account = result.account
    if result.newly_suspended:
        out.print(f"[green]suspended[/] account {account.account_id} ({account.name})")
    else:
        out.print(
            f"account {account.account_id} was already suspended since "
            f"{_when(account.suspended_at)}"
        )
    out.print(f"stopped {len(result.stopped_run_ids)} active run(s)")
    for run_id in result.stopped_run_ids:
        out.print(f"  {run_id}")


@accounts_app.command("unsuspend")
def accounts_unsuspend(
    account_id: Annotated[str, typer.Argument(help="The account's id.")],
) -> None:
    """Lift a suspension (stopped runs stay stopped)."""
    from shoal.accounts import admin

    async def lift(_: Settings, session: AsyncSession) -> tuple[Any, bool]:
        return await admin.unsuspend(session, account_id)

    account, was_suspended = _in_session(lift)
    if was_suspended:
        out.print(f"[green]unsuspended[/] account {account.account_id} ({account.name})")
    else:
        out.print(f"account {account.account_id} was not suspended; nothing changed")
