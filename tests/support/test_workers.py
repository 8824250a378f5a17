"""The suite runs on pytest-xdist workers: each has its own databases, so none can empty or
change another's rows or Redis keys; and each test starts on empty tables."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from stealth_recovery.organizations.models import Organization
from tests.support.workers import (
    BASE_REDIS_URL,
    TEST_DATABASE,
    WORKER,
    empty_tables,
    postgres_database_name,
    worker_redis_url,
)


class TestRedisDatabasePerWorker:
    def test_a_plain_run_uses_the_database_it_is_given(self) -> None:
        assert worker_redis_url("redis://127.0.0.1:6379/15", "") == "redis://127.0.0.1:6379/15"

    def test_workers_count_down_from_the_given_database(self) -> None:
        # Given the default base and three workers
        base = "redis://:secret@127.0.0.1:6380/15?socket_timeout=2"
        # When each asks for its Redis URL
        urls = [worker_redis_url(base, f"gw{n}") for n in range(3)]
        # Then each has its own database, and host, password and options are kept
        assert urls == [
            "redis://:secret@127.0.0.1:6380/15?socket_timeout=2",
            "redis://:secret@127.0.0.1:6380/14?socket_timeout=2",
            "redis://:secret@127.0.0.1:6380/13?socket_timeout=2",
        ]

    def test_a_base_too_low_for_the_workers_is_refused_by_name(self) -> None:
        refusal = "TEST_REDIS_URL database 1 leaves none for worker gw2"
        with pytest.raises(ValueError, match=refusal):
            worker_redis_url("redis://127.0.0.1:6379/1", "gw2")

    def test_this_process_tests_against_its_own_redis_database(self, redis_url: str) -> None:
        assert redis_url == worker_redis_url(BASE_REDIS_URL, WORKER)


class TestPostgresDatabasePerWorker:
    def test_names_carry_the_worker_and_never_repeat(self) -> None:
        names = {postgres_database_name("gw1") for _ in range(50)}
        assert len(names) == 50
        assert all(name.startswith("sr_test_gw1_") for name in names)
        assert postgres_database_name("").startswith("sr_test_main_")

    def test_this_process_tests_against_its_own_database(self, database_url: str) -> None:
        if TEST_DATABASE == "sqlite":
            pytest.skip("the SQLite file is in this worker's own temporary folder")
        name = make_url(database_url).database
        assert name is not None and name.startswith(f"sr_test_{WORKER or 'main'}_")


class TestEachTestStartsEmpty:
    def test_emptying_deletes_every_row_and_restarts_ids(self, db: Session, engine: Engine) -> None:
        # Given two organizations, the second with id 2
        db.add_all(
            [Organization(name="First", slug="first"), Organization(name="Second", slug="second")]
        )
        db.commit()
        assert db.scalar(select(func.max(Organization.id))) == 2
        db.rollback()
        # When the tables are emptied as after every test
        empty_tables(engine)
        # Then no row is left and the next row gets id 1 again
        assert db.scalar(select(func.count()).select_from(Organization)) == 0
        again = Organization(name="Again", slug="again")
        db.add(again)
        db.commit()
        assert again.id == 1
