"""The `stealth-recovery` command."""

from __future__ import annotations

import sys

import typer

from stealth_recovery.core.settings import SettingsError, get_settings

app = typer.Typer(help="Stealth Recovery: wins back failed payments.", no_args_is_help=True)


def _settings_or_exit():  # type: ignore[no-untyped-def]
    try:
        return get_settings()
    except SettingsError as exc:
        typer.secho(str(exc), err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None


def _migrate() -> None:
    from stealth_recovery.core.database import get_engine
    from stealth_recovery.core.migrate import upgrade_to_head

    upgrade_to_head(get_engine())


@app.command()
def migrate() -> None:
    """Apply every database migration (the only way the schema is made)."""
    _settings_or_exit()
    _migrate()
    typer.echo("database is at the latest migration")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    migrate_first: bool = typer.Option(True, "--migrate/--no-migrate", help="apply migrations"),
) -> None:
    """Run the API. Without REDIS_URL the retry queue runs in-process on a timer."""
    import uvicorn

    from stealth_recovery.app import create_app
    from stealth_recovery.core.logging import configure_logging

    settings = _settings_or_exit()
    configure_logging(settings.log_level, settings.log_json)
    if migrate_first:
        _migrate()
    run_scheduler = not settings.uses_celery and settings.embedded_scheduler
    mode = "embedded scheduler" if run_scheduler else "Celery workers"
    typer.echo(f"Stealth Recovery on http://{host}:{port} (queue: {mode}; docs at /docs)")
    uvicorn.run(create_app(run_scheduler=run_scheduler), host=host, port=port)


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
