"""Checks a command makes before it starts, each failing with one line that names the setting.

A person starting the service should read what is wrong (the variable, the problem), not a
traceback: the CLI prints `StartupError` as it is and exits with code 2.
"""

from __future__ import annotations

import errno
import socket

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from stealth_recovery.core.settings import Settings

CONNECT_TIMEOUT_SECONDS = 5


class StartupError(RuntimeError):
    """The service cannot start; the message is one line for the person starting it."""


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def check_database(settings: Settings) -> None:
    """Connect once to DATABASE_URL (at most CONNECT_TIMEOUT_SECONDS for PostgreSQL).

    Raises StartupError naming DATABASE_URL (password hidden) and the driver's reason.
    """
    url = make_url(settings.sqlalchemy_url)
    connect_args: dict[str, object] = {}
    if url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        raise StartupError(f"DATABASE_URL: cannot connect to {shown}: {_first_line(exc)}") from None
    finally:
        engine.dispose()


def check_broker(settings: Settings) -> None:
    """Ping the Celery broker (REDIS_URL or CELERY_BROKER_URL) when one is configured.

    Raises StartupError naming the variable and the reason.
    """
    url = settings.broker_url
    if url is None:
        return
    name = "CELERY_BROKER_URL" if settings.celery_broker_url else "REDIS_URL"
    import redis

    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=CONNECT_TIMEOUT_SECONDS,
        )
        client.ping()
        client.close()
    except (redis.RedisError, ValueError, OSError) as exc:
        shown = url.split("@")[-1] if "@" in url else url
        raise StartupError(f"{name}: cannot connect to {shown}: {_first_line(exc)}") from None


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), listening, for the web server to serve on.

    Bound before anything else starts, so a port already in use fails at once.
    Raises StartupError naming the address and the reason.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "already in use (is another server running? pick one with --port)"
        elif exc.errno == errno.EACCES:
            reason = "not allowed for this user (ports below 1024 need privileges)"
        else:
            reason = exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def public_url(host: str, port: int) -> str:
    """The address people and providers use to reach a server listening on (host, port).

    A wildcard address (0.0.0.0, ::) is shown as localhost; an IPv6 address gets brackets.
    """
    if host in {"", "0.0.0.0", "::"}:
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
