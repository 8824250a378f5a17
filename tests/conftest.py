"""Fixtures: a fresh database per test process, migrated with Alembic, emptied after each test.

`TEST_DATABASE=postgresql` (default) uses the PostgreSQL server at `TEST_POSTGRES_URL`;
`TEST_DATABASE=sqlite` runs the same suite on a SQLite file. With `CI=true`, an unreachable
PostgreSQL or Redis fails the run instead of skipping.

Under pytest-xdist (`-n 2`) every worker is its own test process: its own PostgreSQL database
(named after the worker), its own SQLite file and temporary folders (pytest gives each worker its
own base folder), and its own Redis database: worker `gwN` uses the database `TEST_REDIS_URL`
names minus N (15, 14, ... by default), so a test that empties its Redis database never empties
another worker's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from tests.support.builders import Account

from tests.support.workers import (
    BASE_REDIS_URL,
    IN_CI,
    POSTGRES_ADMIN_URL,
    TEST_DATABASE,
    WORKER,
    empty_tables,
    postgres_database_name,
    worker_redis_url,
)

# Settings are read from the environment: set the test values before the package reads them.
os.environ.setdefault("ENVIRONMENT", "test")
os.environ.setdefault("SECRET_KEY", "tests-only-0f5e2c9a7b4d4e1f8a6c3b2d9e7f1a0c")
os.environ.pop("REDIS_URL", None)


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if IN_CI:
        pytest.exit(f"CI=true and {message}", returncode=3)
    pytest.skip(message)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Before pytest-xdist starts its workers (`-n N`), check once, in the main process, that the
    Redis base leaves a database for each worker and, with `CI=true`, that PostgreSQL and every
    worker's Redis database answer: a stop inside a worker would lose its message."""
    if WORKER:
        return
    workers = getattr(session.config.option, "numprocesses", None) or 0
    try:
        urls = [worker_redis_url(BASE_REDIS_URL, f"gw{n}") for n in range(workers)]
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc
    if not IN_CI or not workers:
        return
    import redis

    if TEST_DATABASE != "sqlite":
        admin = create_engine(POSTGRES_ADMIN_URL)
        try:
            with admin.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            pytest.exit(f"CI=true and PostgreSQL is not reachable: {exc}", returncode=3)
        finally:
            admin.dispose()
    for url in urls:
        try:
            redis.Redis.from_url(url, socket_timeout=2).ping()
        except Exception as exc:
            pytest.exit(f"CI=true and Redis is not reachable at {url}: {exc}", returncode=3)


def _create_postgres_database() -> str:
    name = postgres_database_name()
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if TEST_DATABASE == "sqlite":
        path = Path(tmp_path_factory.mktemp("db")) / "test.db"
        yield f"sqlite:///{path}"
        return
    try:
        url = _create_postgres_database()
    except Exception as exc:
        _unavailable("PostgreSQL", exc)
        raise
    yield url
    _drop_postgres_database(url)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    from stealth_recovery.core import database
    from stealth_recovery.core.migrate import upgrade_to_head
    from stealth_recovery.core.settings import get_settings

    os.environ["DATABASE_URL"] = database_url
    get_settings.cache_clear()
    database.reset_engine()
    test_engine = database.make_engine(get_settings().sqlalchemy_url)
    upgrade_to_head(test_engine)
    database.configure_engine(test_engine)
    yield test_engine
    database.reset_engine()


@pytest.fixture(autouse=True)
def _settings_follow_the_environment() -> Iterator[None]:
    """Settings are cached per process; a test that changes the environment gets fresh ones,
    and the next test does not inherit them."""
    from stealth_recovery.core.settings import get_settings

    yield
    get_settings.cache_clear()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session on the test database; every table is emptied after the test."""
    from stealth_recovery.core.database import get_session_factory

    session = get_session_factory()()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
        empty_tables(engine)


@pytest.fixture
def postgres_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (row locks, concurrent writers)")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """This worker's own Redis database (see `worker_redis_url`); tests may empty it."""
    import redis

    try:
        url = worker_redis_url()
    except ValueError as exc:
        pytest.fail(str(exc))
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except Exception as exc:
        _unavailable("Redis", exc)
    return url


@pytest.fixture
def admin(db: Session) -> Account:
    """An organization of its own with one admin."""
    from stealth_recovery.auth.models import Role
    from tests.support.builders import make_account

    return make_account(db, role=Role.admin)


@pytest.fixture
def analyst(db: Session, admin: Account) -> Account:
    from stealth_recovery.auth.models import Role
    from tests.support.builders import make_account

    return make_account(db, role=Role.analyst, organization=admin.organization)


@pytest.fixture
def operator(db: Session, admin: Account) -> Account:
    from stealth_recovery.auth.models import Role
    from tests.support.builders import make_account

    return make_account(db, role=Role.operator, organization=admin.organization)


@pytest.fixture
def fresh_runtime() -> Iterator[None]:
    """Provider clients are rebuilt before and after the test, which points them at its own
    servers (SMTP sink, fake providers)."""
    from stealth_recovery.retry.runtime import reset_runtime

    reset_runtime()
    yield
    reset_runtime()


@pytest.fixture
def app(db: Session):  # type: ignore[no-untyped-def]
    from stealth_recovery.app import create_app

    return create_app()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client
