"""The `stealth-recovery` command."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import NoReturn

import typer

from stealth_recovery.core.settings import Settings, SettingsError, get_settings

app = typer.Typer(
    help="Stealth Recovery: wins back failed payments.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit code 2: what a person starting the service needs, no trace."""
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


def _settings_or_exit() -> Settings:
    try:
        settings = get_settings()
        # The embedded default makes its key file on the first start, not on the first login.
        settings.signing_secret()
        return settings
    except SettingsError as exc:
        _fail(str(exc))


def _check_database(settings: Settings) -> None:
    from stealth_recovery.core.startup import StartupError, check_database

    try:
        check_database(settings)
    except StartupError as exc:
        _fail(str(exc))


def _migrate() -> None:
    from stealth_recovery.core.database import get_engine
    from stealth_recovery.core.migrate import upgrade_to_head

    upgrade_to_head(get_engine())


@app.command()
def migrate() -> None:
    """Apply every database migration (the only way the schema is made)."""
    settings = _settings_or_exit()
    _check_database(settings)
    _migrate()
    typer.echo("database is at the latest migration")


@app.command("create-admin")
def create_admin(
    organization: str = typer.Option(
        ..., help="organization name (customers see it as the sender)"
    ),
    email: str = typer.Option(..., help="the admin's login e-mail"),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="asked when omitted"
    ),
    slug: str | None = typer.Option(None, help="URL slug; derived from the name when omitted"),
    full_name: str | None = typer.Option(None, help="the admin's name"),
) -> None:
    """Create an organization and its first admin, whatever REGISTRATION says (migrates first)."""
    from pydantic import ValidationError

    from stealth_recovery.auth import service
    from stealth_recovery.auth.schemas import RegisterRequest
    from stealth_recovery.core.database import session_scope
    from stealth_recovery.core.errors import DomainError

    _settings_or_exit()
    try:
        body = RegisterRequest(
            organization_name=organization,
            organization_slug=slug,
            email=email,
            password=password,
            full_name=full_name,
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            typer.secho(f"{field}: {error['msg']}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    _migrate()
    try:
        with session_scope() as session:
            org, user = service.register(
                session,
                organization_name=body.organization_name,
                organization_slug=body.organization_slug,
                email=str(body.email),
                password=body.password,
                full_name=body.full_name,
            )
            summary = f"organization {org.name!r} (slug {org.slug}) with admin {user.email}"
    except DomainError as exc:
        typer.secho(exc.detail, err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from None
    typer.echo(f"created {summary}; sign in at {get_settings().external_url('/dashboard')}")


@app.command()
def invite(
    days: int = typer.Option(7, min=1, max=90, help="days the invite stays valid"),
) -> None:
    """Print a single-use code that lets one new organization register (REGISTRATION=invite)."""
    from stealth_recovery.auth import service
    from stealth_recovery.core.database import session_scope

    settings = _settings_or_exit()
    _migrate()
    with session_scope() as session:
        _, code = service.create_invite(session, valid_days=days)
    if settings.registration_mode != "invite":
        typer.secho(
            f"note: REGISTRATION is {settings.registration_mode!r}; invites are asked for only "
            "when it is 'invite'",
            err=True,
        )
    typer.echo(code)


@app.command("recount-counters")
def recount_counters(
    organization: int | None = typer.Option(
        None, "--organization", help="the organization's id (default: every organization)"
    ),
) -> None:
    """Rebuild the daily counters behind the stats and the dashboard from the rows."""
    from stealth_recovery.core.database import session_scope
    from stealth_recovery.counters.repository import recount

    _settings_or_exit()
    _migrate()
    with session_scope() as session:
        rows = recount(session, organization_id=organization)
    scope = f"organization {organization}" if organization is not None else "every organization"
    typer.echo(f"recounted the daily counters of {scope}: {rows} counter row(s)")


@app.command("rotate-secrets")
def rotate_secrets() -> None:
    """Re-encrypt stored Stripe keys with SECRET_KEY (the old key set as SECRET_KEY_PREVIOUS)."""
    from stealth_recovery.core.database import session_scope
    from stealth_recovery.integrations.stripe.service import reencrypt_connections

    settings = _settings_or_exit()
    if settings.secret_key_previous is None:
        typer.secho(
            "SECRET_KEY_PREVIOUS is not set: set it to the old key and SECRET_KEY to the new one.",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(code=2)
    try:
        with session_scope() as session:
            count = reencrypt_connections(session)
    except RuntimeError as exc:
        typer.secho(f"{exc}; nothing was changed", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from None
    typer.echo(
        f"re-encrypted the Stripe keys of {count} organization(s) with SECRET_KEY; "
        "SECRET_KEY_PREVIOUS can now be removed"
    )


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    migrate_first: bool = typer.Option(True, "--migrate/--no-migrate", help="apply migrations"),
    workers: int = typer.Option(
        1, "--workers", min=1, help="server processes sharing the port (PostgreSQL only above 1)"
    ),
) -> None:
    """Run the API. Without REDIS_URL the retry queue runs in-process on a timer.

    Without an explicit BASE_URL, pay links and provider callbacks use the address served here.
    On PostgreSQL each process's connection pool is sized so that all of them fit the server's
    max_connections, unless DATABASE_POOL_SIZE is set (not 0).
    """
    import uvicorn

    from stealth_recovery.core.logging import configure_logging
    from stealth_recovery.core.startup import (
        StartupError,
        bind_listening_socket,
        check_broker,
        public_url,
    )

    settings = _settings_or_exit()
    if workers > 1 and settings.is_sqlite:
        _fail(
            f"--workers {workers} needs PostgreSQL: SQLite lets one process write at a time, so "
            "more processes only queue on its lock. Use --workers 1 or a PostgreSQL DATABASE_URL."
        )
    try:
        # The port first: a second `serve` on a busy port fails before touching the database.
        sock = bind_listening_socket(host, port)
        check_broker(settings)
    except StartupError as exc:
        _fail(str(exc))
    _check_database(settings)
    if not settings.is_sqlite and not settings.database_pool_size:
        os.environ["DATABASE_POOL_SIZE"] = str(_pool_size_per_process(settings, workers))
    if "base_url" not in settings.model_fields_set:
        os.environ["BASE_URL"] = public_url(host, port)
    get_settings.cache_clear()
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if migrate_first:
        _migrate()
    run_scheduler = not settings.uses_celery and settings.embedded_scheduler
    mode = "embedded scheduler" if run_scheduler else "Celery workers over Redis"
    from stealth_recovery.notifications.outbox import describe_routes

    routes = "\n".join(f"  {ch:<9} → {where}" for ch, where in describe_routes(settings).items())
    processes = f", {workers} processes" if workers > 1 else ""
    typer.echo(
        f"Stealth Recovery on {public_url(host, port)} (queue: {mode}{processes})\n"
        f"  dashboard: {settings.external_url('/dashboard')}   "
        f"API docs: {settings.external_url('/docs')}   "
        f"pay links: {settings.external_url('/pay/…')}\n"
        f"Reminders:\n{routes}"
    )
    # log_config=None: uvicorn's loggers (the access log among them) go through our redacting
    # handler instead of its own, so no pay-link token or e-mail reaches the log.
    # proxy_headers=False: X-Forwarded-For is read by the app itself, only from TRUSTED_PROXIES
    # (core.ratelimit); uvicorn's own handling would believe any local peer.
    # Each process imports `stealth_recovery.app:app`, built from the environment set above.
    config = uvicorn.Config(
        "stealth_recovery.app:app",
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        proxy_headers=False,
    )
    if workers == 1:
        uvicorn.Server(config).run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    from stealth_recovery.core.database import reset_engine

    reset_engine()  # the processes have their own pools: this one keeps no connection open
    Multiprocess(config, sockets=[sock]).run()


def _pool_size_per_process(settings: Settings, workers: int) -> int:
    from stealth_recovery.core.database import (
        get_engine,
        pool_size_for,
        reset_engine,
        server_connection_limits,
    )

    limit, reserved = server_connection_limits(get_engine())
    reset_engine()
    size = pool_size_for(processes=workers, max_connections=limit, superuser_reserved=reserved)
    if size < 2:
        _fail(
            f"--workers {workers} does not fit the database server: max_connections is {limit} "
            f"({reserved} reserved for superusers). Use fewer workers, raise max_connections, "
            "or set DATABASE_POOL_SIZE."
        )
    return size


def _celery(argv: list[str]) -> None:
    settings = _settings_or_exit()
    if not settings.uses_celery:
        _fail(
            "REDIS_URL (or CELERY_BROKER_URL) is not set: Celery needs a broker. Without one, "
            "`stealth-recovery serve` runs the retry queue in-process."
        )
    from stealth_recovery.core.startup import StartupError, check_broker

    try:
        check_broker(settings)
    except StartupError as exc:
        _fail(str(exc))
    _check_database(settings)
    # Every model mapped before a task runs, as in the API: a foreign key may name the table
    # of a higher layer (recovery_attempts.policy_id → retry_policies), and a flush needs it.
    import stealth_recovery.all_models  # noqa: F401
    from stealth_recovery.core.logging import configure_logging
    from stealth_recovery.worker import celery_app

    configure_logging(settings.log_level, settings.log_json)
    celery_app.start(argv)


@app.command()
def worker(
    concurrency: int = typer.Option(0, help="worker processes (0: two per CPU)"),
    loglevel: str = typer.Option("info", help="Celery log level"),
    queues: str = typer.Option("celery", help="comma-separated queues to consume"),
) -> None:
    """Run a Celery worker: sends reminder steps, many messages in flight per process."""
    settings = _settings_or_exit()
    if settings.worker_metrics_port and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Must be set before prometheus_client is imported by the worker code.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sr-worker-metrics-")
    # Sends are I/O-bound and each process keeps many in flight, but the database and message
    # work between them is not: two processes per CPU keep the machine busy (bench/README.md).
    processes = concurrency or 2 * (os.cpu_count() or 1)
    argv = ["worker", f"--loglevel={loglevel}", f"--queues={queues}", f"--concurrency={processes}"]
    _celery(argv)


@app.command()
def beat(
    loglevel: str = typer.Option("info", help="Celery log level"),
    schedule_file: str = typer.Option(
        "/tmp/stealth-recovery-beat-schedule", help="where Beat keeps its last-run times"
    ),
) -> None:
    """Run Celery Beat: the retry queue every minute, expired-attempt cleanup at 02:00 UTC."""
    _celery(["beat", f"--loglevel={loglevel}", f"--schedule={schedule_file}"])


@app.command()
def flower(
    port: int = typer.Option(5555, help="port for the Flower UI"),
    address: str = typer.Option("127.0.0.1", help="address to listen on"),
) -> None:
    """Run Flower against the broker to watch the tasks."""
    _celery(["flower", f"--port={port}", f"--address={address}"])


@app.command()
def demo(
    attempts: int = typer.Option(300, min=1, max=20000, help="failed payments to create"),
    days: int = typer.Option(28, min=1, max=365, help="how far back the history goes"),
    reset: bool = typer.Option(False, "--reset", help="delete and recreate the demo organization"),
    login: bool = typer.Option(
        False, "--login", help="print the demo login again, with a new password (data stays)"
    ),
    seed: int | None = typer.Option(None, help="random seed, for the same data every time"),
) -> None:
    """Create a demo organization with weeks of attempts and messages (migrates first)."""
    from stealth_recovery.core.logging import configure_logging
    from stealth_recovery.demo import DemoError, DemoLogin, DemoResult, reset_demo_login, run_demo

    settings = _settings_or_exit()
    _check_database(settings)
    # One line per created row would drown the progress bar.
    configure_logging("WARNING", settings.log_json)
    credentials: DemoLogin | DemoResult
    try:
        if login:
            credentials = reset_demo_login()
            headline = "Demo login reset (the data is unchanged)."
        else:
            result = run_demo(attempts=attempts, days=days, reset=reset, seed=seed)
            credentials = result
            headline = f"Demo ready: {result.attempts} attempts, {result.messages} messages."
    except DemoError as exc:
        typer.secho(str(exc), err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from None
    typer.echo(
        f"{headline}\n"
        f"Dashboard: {settings.external_url('/dashboard')}\n"
        f"  admin:    {credentials.email}\n"
        f"  analyst:  {credentials.analyst_email}\n"
        f"  password: {credentials.password}"
    )


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
