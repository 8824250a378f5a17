"""Fixtures: a fresh database per test session, migrated with Alembic, emptied after each test.

`TEST_DATABASE=postgresql` (default) uses the PostgreSQL server at `TEST_POSTGRES_URL`;
`TEST_DATABASE=sqlite` runs the same suite on a SQLite file. With `CI=true`, an unreachable
PostgreSQL or Redis fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_DATABASE = os.environ.get("TEST_DATABASE", "postgresql")
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# Settings are read from the environment: set the test values before the package reads them.
os.environ.setdefault("ENVIRONMENT", "test")
os.environ.setdefault("SECRET_KEY", "tests-only-0f5e2c9a7b4d4e1f8a6c3b2d9e7f1a0c")
os.environ.pop("REDIS_URL", None)


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if IN_CI:
        pytest.exit(f"CI=true and {message}", returncode=3)
    pytest.skip(message)


def _create_postgres_database() -> str:
    name = f"sr_test_{uuid.uuid4().hex[:12]}"
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


def _empty_tables(engine: Engine) -> None:
    from stealth_recovery.core.all_models import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


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
        _empty_tables(engine)


@pytest.fixture
def postgres_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (row locks, concurrent writers)")


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:
        _unavailable("Redis", exc)
    return REDIS_URL


@pytest.fixture
def app(db: Session):  # type: ignore[no-untyped-def]
    from stealth_recovery.app import create_app

    return create_app()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client
