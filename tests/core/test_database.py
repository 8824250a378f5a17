"""Units of work: a request's commits before its response leaves the server; SQLite's single-writer
path takes the lock when a writing unit of work begins; how many connections each web process
may open so that all of them fit the server."""

from __future__ import annotations

import threading

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from stealth_recovery.core.database import (
    MAX_POOL_SIZE,
    RESERVED_CONNECTIONS,
    SessionDep,
    get_engine,
    get_session_factory,
    open_session,
    pool_size_for,
)
from stealth_recovery.organizations.models import Organization
from tests.support.builders import PASSWORD, make_account
from tests.support.server import running_server


@pytest.fixture
def sqlite_only(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("about SQLite's locking")


def _rename(name: str) -> None:
    with open_session(write=True) as other:
        other.execute(update(Organization).values(name=name))
        other.commit()


class TestSqliteWriters:
    def test_a_reader_that_turns_writer_fails_after_another_commit(
        self, db: Session, sqlite_only: None
    ) -> None:
        # Given a deferred (read) unit of work that has read a row
        org_id = make_account(db).organization.id
        reader = open_session(write=False)
        try:
            reader.scalar(select(Organization.name).where(Organization.id == org_id))
            # When another unit of work commits a write, and the reader then writes
            _rename("changed elsewhere")
            # Then SQLite refuses the upgrade: why a GET that writes needs a writer session
            with pytest.raises(OperationalError):
                reader.execute(update(Organization).values(name="too late"))
                reader.flush()
        finally:
            reader.rollback()
            reader.close()

    def test_a_writer_session_makes_the_other_writer_wait(
        self, db: Session, sqlite_only: None
    ) -> None:
        # Given a writer unit of work that read a row first
        org_id = make_account(db).organization.id
        writer = open_session(write=True)
        writer.scalar(select(Organization.name).where(Organization.id == org_id))
        # When another writer starts meanwhile
        other = threading.Thread(target=_rename, args=("second",))
        other.start()
        other.join(timeout=0.5)
        assert other.is_alive(), "the second writer should wait for the first"
        # Then the first writes and commits, and the second goes through after it
        writer.execute(update(Organization).values(name="first"))
        writer.commit()
        writer.close()
        other.join(timeout=10)
        db.expire_all()
        assert db.scalar(select(Organization.name).where(Organization.id == org_id)) == "second"


class TestCommitBeforeResponse:
    def test_a_created_row_is_readable_as_soon_as_the_201_arrives(self, db: Session) -> None:
        # Given the real app served over a socket
        with running_server() as base_url, httpx.Client(base_url=base_url) as client:
            for n in range(25):
                # When a client registers an organization
                response = client.post(
                    "/v1/auth/register",
                    json={
                        "organization_name": f"Race {n}",
                        "organization_slug": f"race-{n}",
                        "email": f"race{n}@example.com",
                        "password": PASSWORD,
                    },
                )
                assert response.status_code == 201, response.text
                # Then another connection sees it the moment the response is in
                with get_session_factory()() as reader:
                    found = reader.scalar(
                        select(Organization.id).where(Organization.slug == f"race-{n}")
                    )
                assert found == response.json()["organization"]["id"], f"not committed at {n}"


class TestPoolSizeFor:
    def test_the_processes_share_what_the_server_leaves(self) -> None:
        # Given PostgreSQL's default 100 connections, 3 kept for superusers
        size = pool_size_for(processes=4, max_connections=100, superuser_reserved=3)
        # Then four processes share the rest after the reserve, and fit
        assert size == (100 - 3 - RESERVED_CONNECTIONS) // 4
        assert 4 * size + RESERVED_CONNECTIONS + 3 <= 100

    def test_one_process_is_capped(self) -> None:
        assert pool_size_for(processes=1, max_connections=1000, superuser_reserved=3) == (
            MAX_POOL_SIZE
        )

    def test_too_many_processes_get_nothing(self) -> None:
        assert pool_size_for(processes=50, max_connections=20, superuser_reserved=3) == 0


class TestRequestSession:
    """The request's unit of work (`SessionDep`): committed when the handler returns, rolled
    back when it raises, and its connection back in the pool either way."""

    @staticmethod
    def _app() -> FastAPI:
        app = FastAPI()

        @app.post("/organizations/{slug}")
        def create(slug: str, session: SessionDep, fail: bool = False) -> dict[str, str]:
            session.add(Organization(name=slug, slug=slug))
            session.flush()
            if fail:
                raise HTTPException(status_code=409, detail="refused after writing")
            return {"slug": slug}

        return app

    def test_a_handler_that_returns_commits(self, db: Session) -> None:
        # Given a route that adds an organization
        before = get_engine().pool.checkedout()
        with TestClient(self._app()) as client:
            # When it returns
            assert client.post("/organizations/kept").status_code == 200
        # Then its connection is back in the pool and the row is stored
        assert get_engine().pool.checkedout() == before
        assert db.scalar(select(Organization.id).where(Organization.slug == "kept")) is not None

    def test_a_handler_that_raises_after_writing_keeps_nothing(self, db: Session) -> None:
        # Given a route that adds an organization, then refuses the request
        before = get_engine().pool.checkedout()
        with TestClient(self._app()) as client:
            # When it raises
            assert client.post("/organizations/dropped?fail=true").status_code == 409
        # Then its connection is back in the pool and nothing it wrote is stored
        assert get_engine().pool.checkedout() == before
        assert db.scalar(select(Organization.id).where(Organization.slug == "dropped")) is None
