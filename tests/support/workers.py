"""Where this test process's data lives: its PostgreSQL database, its Redis database, and how its
tables are emptied. Under pytest-xdist every worker (`gw0`, `gw1`, ...) is its own test process
with its own databases; tests/conftest.py builds the fixtures on these."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, text

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_DATABASE = os.environ.get("TEST_DATABASE", "postgresql")
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BASE_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# "gw0", "gw1", ... in a pytest-xdist worker; empty in a plain (single-process) run.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def worker_index(worker: str = WORKER) -> int:
    """The pytest-xdist worker number in `worker` ("gw3" -> 3); 0 in a plain run ("")."""
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def worker_redis_url(base_url: str = BASE_REDIS_URL, worker: str = WORKER) -> str:
    """The Redis URL a worker tests against: `base_url`'s database minus the worker number.

    Counting down from the base (15 by default) keeps the workers off database 0, the one a
    local `serve` uses. Raises ValueError when the base leaves no database for the worker.
    """
    parts = urlsplit(base_url)
    base = int(parts.path.strip("/") or 0)
    number = base - worker_index(worker)
    if number < 0:
        raise ValueError(
            f"TEST_REDIS_URL database {base} leaves none for worker {worker}: "
            "use a higher database number or fewer workers (-n)"
        )
    return urlunsplit(parts._replace(path=f"/{number}"))


def postgres_database_name(worker: str = WORKER) -> str:
    """A new database name for one test process: `sr_test_<worker or main>_<12 hex digits>`."""
    return f"sr_test_{worker or 'main'}_{uuid.uuid4().hex[:12]}"


def empty_tables(engine: Engine) -> None:
    """Delete every row, children first, and restart PostgreSQL's id sequences at 1.

    The same end state as `TRUNCATE ... RESTART IDENTITY`, in a few milliseconds: TRUNCATE makes
    new files for every table and index and syncs them at commit, 0.2-0.4 s per test here.
    """
    from stealth_recovery.all_models import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        for table in tables:
            connection.execute(text(f"DELETE FROM {table}"))
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "SELECT setval(format('%I.%I', schemaname, sequencename), 1, false)"
                    " FROM pg_sequences WHERE schemaname = current_schema()"
                )
            )
