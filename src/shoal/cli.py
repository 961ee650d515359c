"""The `shoal` command (typer + rich).

Heavy imports (the app, SQLAlchemy models, LiteLLM) happen inside commands so that
`shoal --help` stays instant.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from shoal.cli_admin import accounts_app, runs_app
from shoal.config import Settings, load_settings
from shoal.errors import ConfigError

console = Console(stderr=True)
app = typer.Typer(
    name="shoal",
    help="Self-hostable backend for autonomous AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
api_keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(runs_app, name="runs")  # operator commands: shoal/cli_admin.py
app.add_typer(accounts_app, name="accounts")


def _settings_help() -> str:
    lines = ["Settings (environment variables):", ""]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = getattr(alias, "choices", [name.upper()])[0]
        default = field.default if field.default_factory is None else "[]"
        desc = f" — {field.description}" if field.description else ""
        lines.append(f"  {env} (default: {default}){desc}")
    return "\n\n".join(["\b\n" + "\n".join(lines)])


def fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        for problem in exc.problems:
            console.print(f"[bold red]config:[/] {problem}")
        raise typer.Exit(2) from None


def _preload_litellm() -> None:
    """Import LiteLLM (seconds of CPU) in a background thread while the process starts, so the
    first run does not pay for it; start-up itself does not wait."""
    import threading

    from shoal.llm.litellm_adapter import load_litellm

    threading.Thread(target=load_litellm, name="litellm-preload", daemon=True).start()


@app.command(epilog=_settings_help())
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the API (and, without a broker, the run executor) on embedded defaults or services."""
    settings = settings_or_exit()
    import uvicorn

    from shoal.app import create_app
    from shoal.observability.logging import configure_logging

    configure_logging()
    if settings.broker_url is None:
        _preload_litellm()  # this process executes runs
    console.print(f"[bold green]shoal[/] serving on http://{host}:{port}  (API docs: /api/docs)")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        proxy_headers=True,
    )


@app.command()
def worker(
    threads: Annotated[int, typer.Option(help="Dramatiq consumer threads (runs are async).")] = 8,
) -> None:
    """Run a worker: takes runs from RabbitMQ (needs SHOAL_BROKER_URL and SHOAL_REDIS_URL)."""
    settings = settings_or_exit()
    if not settings.broker_url or not settings.redis_url:
        fail(
            "shoal worker needs SHOAL_BROKER_URL and SHOAL_REDIS_URL (embedded serve runs its own)"
        )
    from shoal.observability.logging import configure_logging
    from shoal.runs.actor import serve_worker

    configure_logging()
    _preload_litellm()
    console.print("[bold green]shoal[/] worker started — Ctrl-C or SIGTERM drains it")
    serve_worker(settings, threads=threads)


@app.command()
def migrate() -> None:
    """Apply database migrations (SHOAL_DATABASE_URL)."""
    settings = settings_or_exit()
    from shoal.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with console.status("Applying migrations…"):
        upgrade(settings.effective_database_url)
    console.print("[green]database is up to date[/]")


@asynccontextmanager
async def _accounts_database(settings: Settings) -> AsyncIterator[Any]:
    """A session factory on the configured database (migrated first when it is SQLite)."""
    from shoal.db.engine import create_engine, session_factory
    from shoal.db.migrate import upgrade_async

    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade_async(settings.effective_database_url)
    engine = create_engine(settings.effective_database_url, settings=settings)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The user's email address (their sign-in name).")],
    password: Annotated[
        str | None, typer.Option(help="Their password; prompted for (hidden) when omitted.")
    ] = None,
) -> None:
    """Create a password user with their personal account (built-in auth)."""
    import asyncio

    from shoal.accounts import identity
    from shoal.db.session import unit_of_work
    from shoal.errors import ShoalError

    settings = settings_or_exit()
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def create() -> tuple[str, str]:
        async with _accounts_database(settings) as factory, unit_of_work(factory) as session:
            user = await identity.create_user(session, email=email, password=password)
            return str(user.id), str(user.email)

    try:
        user_id, address = asyncio.run(create())
    except ShoalError as exc:
        if exc.code == "user_already_exists":
            fail(f"a user with the email {email.strip().lower()} already exists", 1)
        fail(exc.message, 1)
    console.print(f"[green]created user[/] {address}  [dim](id {user_id})[/]")


@api_keys_app.command("create")
def api_keys_create(
    email: Annotated[str, typer.Option(help="The user the key acts for (an account owner).")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")] = "cli",
    account_id: Annotated[
        str | None, typer.Option(help="The account the key belongs to (default: personal).")
    ] = None,
) -> None:
    """Create an API key and print its secret (shown only this once)."""
    import asyncio

    from rich.console import Console as RichConsole

    from shoal.accounts import service as account_service
    from shoal.accounts.repository import AccountRepository
    from shoal.auth.principal import Principal
    from shoal.db.session import unit_of_work
    from shoal.errors import ShoalError
    from shoal.kit.ids import parse_id

    settings = settings_or_exit()
    account = parse_id(account_id) if account_id is not None else None
    if account_id is not None and account is None:
        fail(f"{account_id!r} is not an account id (a UUID)", 1)

    async def create() -> tuple[str, str, str]:
        async with _accounts_database(settings) as factory, unit_of_work(factory) as session:
            user = await AccountRepository(session).get_user_by_email(email.strip())
            if user is None:
                raise LookupError(f"no user with the email {email.strip().lower()}")
            # The operator acts as the user, like a signed-in session would.
            principal = Principal(user_id=user.id, via="jwt", email=user.email)
            key = await account_service.create_api_key(
                session, principal, account_id=account or user.id, name=name
            )
            return key.secret, str(key.key_id), str(account or user.id)

    try:
        secret, key_id, owner_account = asyncio.run(create())
    except LookupError as exc:
        fail(str(exc), 1)
    except ShoalError as exc:
        if exc.code == "not_found":
            fail(f"{email.strip().lower()} is not a member of account {account_id}", 1)
        fail(exc.message, 1)
    console.print(
        f"[green]created API key[/] {name!r} [dim](id {key_id}, account {owner_account})[/]\n"
        "[yellow]Copy it now: the secret is not shown again.[/]"
    )
    RichConsole(highlight=False).print(secret, soft_wrap=True)


@app.command()
def usage(
    email: Annotated[
        str | None, typer.Option(help="Show the personal account of the user with this email.")
    ] = None,
    account_id: Annotated[str | None, typer.Option(help="Show this account.")] = None,
    group_by: Annotated[str, typer.Option(help="day | model | thread")] = "day",
) -> None:
    """Show an account's metered usage this billing period (from the usage ledger)."""
    import asyncio

    from rich.console import Console as RichConsole
    from rich.table import Table

    from shoal.accounts.repository import AccountRepository
    from shoal.billing import service as billing_service
    from shoal.db.session import unit_of_work
    from shoal.kit.ids import parse_id

    if (email is None) == (account_id is None):
        fail("give exactly one of --email or --account-id", 1)
    if group_by not in ("day", "model", "thread"):
        fail(f"--group-by must be day, model or thread (got {group_by!r})", 1)
    account = parse_id(account_id) if account_id is not None else None
    if account_id is not None and account is None:
        fail(f"{account_id!r} is not an account id (a UUID)", 1)
    settings = settings_or_exit()

    async def load() -> tuple[Any, Any]:
        async with _accounts_database(settings) as factory, unit_of_work(factory) as session:
            target = account
            if email is not None:
                user = await AccountRepository(session).get_user_by_email(email.strip())
                if user is None:
                    raise LookupError(f"no user with the email {email.strip().lower()}")
                target = user.id
            assert target is not None
            if await AccountRepository(session).get_account(target) is None:
                raise LookupError(f"no account {target}")
            status = await billing_service.check_status(
                session, settings=settings, account_id=target
            )
            report = await billing_service.usage_report(
                session,
                settings=settings,
                account_id=target,
                start=None,
                end=None,
                group_by=group_by,  # type: ignore[arg-type]
            )
            return status, report

    try:
        status, report = asyncio.run(load())
    except LookupError as exc:
        fail(str(exc), 1)
    out = RichConsole()
    limit = "no limit" if status.limit_usd is None else f"limit ${status.limit_usd:,.2f}"
    out.print(
        f"[bold]plan[/] {status.plan} — spent ${status.spent_usd:,.4f} ({limit}) in "
        f"{report.from_:%Y-%m-%d} … {report.to:%Y-%m-%d} UTC"
        + ("" if status.can_run else f"  [red]{status.code}[/]")
    )
    table = Table(title=f"usage by {group_by}", show_footer=True)
    table.add_column(group_by, footer="total")
    table.add_column("prompt tokens", justify="right", footer=f"{report.total.prompt_tokens:,}")
    table.add_column(
        "completion tokens", justify="right", footer=f"{report.total.completion_tokens:,}"
    )
    table.add_column("exec s", justify="right", footer=f"{report.total.exec_seconds:,.1f}")
    table.add_column("cost USD", justify="right", footer=f"{report.total.cost_usd:,.6f}")
    for row in report.rows:
        table.add_row(
            row.key,
            f"{row.prompt_tokens:,}",
            f"{row.completion_tokens:,}",
            f"{row.exec_seconds:,.1f}",
            f"{row.cost_usd:,.6f}",
        )
    out.print(table)


@app.command()
def chat(
    prompt: Annotated[
        str | None,
        typer.Argument(
            help="Send this, print the answer and exit. Without it: stdin when piped, "
            "else an interactive session."
        ),
    ] = None,
    url: Annotated[str, typer.Option(help="The shoal server.")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="SHOAL_API_KEY", help="An API key (shoal_sk_…)."),
    ] = None,
    email: Annotated[
        str | None, typer.Option(help="Sign in with this email instead of an API key.")
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="The password (prompted for, hidden, when omitted).")
    ] = None,
    thread: Annotated[
        str | None, typer.Option(help="Continue this thread (default: a new one).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="The model for the runs.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print every event as one JSON line.")
    ] = False,
) -> None:
    """Chat with an agent on a running shoal. Exits 0 when the run completed, 1 otherwise;
    Ctrl-C stops the running answer, a second Ctrl-C quits."""
    from shoal.chat import ChatConfig, run_chat

    config = ChatConfig(
        url=url,
        api_key=api_key,
        email=email,
        password=password,
        thread_id=thread,
        model=model,
        json_output=json_output,
    )
    raise typer.Exit(run_chat(config, prompt))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
