"""The `shoal` command (typer + rich).

Heavy imports (the app, SQLAlchemy models, LiteLLM) happen inside commands so that
`shoal --help` stays instant.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console

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
def migrate() -> None:
    """Apply database migrations (SHOAL_DATABASE_URL)."""
    settings = settings_or_exit()
    from shoal.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with console.status("Applying migrations…"):
        upgrade(settings.effective_database_url)
    console.print("[green]database is up to date[/]")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
