"""No request holds SQLite's write lock while argon2 runs: every path that hashes a password.

The probe wraps pwdlib's argon2 hasher (the library, not our code): at each hash or verify it
asks, from a separate connection that does not wait (timeout 0), for SQLite's write lock, and
notes whether another writer would have got it at that moment.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from stealth_recovery.auth import service
from stealth_recovery.cli import app as cli
from stealth_recovery.core.settings import get_settings
from tests.support.builders import PASSWORD, make_account
from tests.support.web import post_form, web_login

NEW_PASSWORD = "violet kettle under quiet harbour"


class LockProbe:
    """Records, for each argon2 call made while watching, whether a writer got the lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.watching = False
        self.seen: list[bool] = []

    def __enter__(self) -> LockProbe:
        self.seen = []
        self.watching = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.watching = False

    def look(self) -> None:
        if not self.watching:
            return
        other = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            self.seen.append(True)
        except sqlite3.OperationalError:  # "database is locked": someone holds the write lock
            self.seen.append(False)
        finally:
            other.close()


@pytest.fixture
def probe(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> LockProbe:
    if engine.dialect.name != "sqlite":
        pytest.skip("about SQLite's single writer")
    assert engine.url.database
    lock_probe = LockProbe(engine.url.database)
    real_hash, real_verify = Argon2Hasher.hash, Argon2Hasher.verify

    def hash_(self: Argon2Hasher, password: Any, *args: Any, **kwargs: Any) -> str:
        lock_probe.look()
        return real_hash(self, password, *args, **kwargs)

    def verify(self: Argon2Hasher, password: Any, hash: Any, *args: Any, **kwargs: Any) -> bool:
        lock_probe.look()
        return real_verify(self, password, hash, *args, **kwargs)

    monkeypatch.setattr(Argon2Hasher, "hash", hash_)
    monkeypatch.setattr(Argon2Hasher, "verify", verify)
    return lock_probe


@pytest.fixture
def invite_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REGISTRATION", "invite")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestHashingOutsideTheWriteLock:
    def test_an_admin_creating_a_user_through_the_api(
        self, client: TestClient, db: Session, probe: LockProbe
    ) -> None:
        # Given a signed-in admin
        admin = make_account(db)
        # When they create a user (their own authentication is the request's first statement)
        with probe:
            response = client.post(
                "/v1/users",
                json={"email": "new@example.com", "password": NEW_PASSWORD, "role": "analyst"},
                headers=admin.headers,
            )
        # Then it is created, and another writer could write while the password was hashed
        assert response.status_code == 201
        assert probe.seen == [True]

    def test_an_admin_creating_a_user_through_the_dashboard(
        self, client: TestClient, db: Session, probe: LockProbe
    ) -> None:
        admin = make_account(db)
        web_login(client, admin.user.email)
        form = {"email": "new@example.com", "password": NEW_PASSWORD, "role": "operator"}
        with probe:
            response = post_form(client, "/dashboard/team", "/dashboard/users", form)
        assert response.status_code == 303
        assert probe.seen == [True]

    def test_a_password_change_through_the_api_and_the_dashboard(
        self, client: TestClient, db: Session, probe: LockProbe
    ) -> None:
        # Given a signed-in user
        account = make_account(db)
        body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        # When they change their password (verify the current one, hash the new one)
        with probe:
            api = client.post("/v1/auth/password", json=body, headers=account.headers)
        # Then both argon2 calls ran with the lock free
        assert api.status_code == 200
        assert probe.seen == [True, True]
        # And the same on the dashboard's form (a fresh login, then the change back)
        web_login(client, account.user.email, NEW_PASSWORD)
        form = {"current_password": NEW_PASSWORD, "new_password": PASSWORD + " again"}
        with probe:
            web = post_form(client, "/dashboard/account", "/dashboard/account/password", form)
        assert web.status_code == 303
        assert probe.seen == [True, True]

    def test_a_password_reset_through_the_api_and_the_dashboard(
        self, client: TestClient, db: Session, probe: LockProbe
    ) -> None:
        # Given two reset links (the token is spent by the first write of each request)
        account = make_account(db)
        _, first = service.request_password_reset(db, email=account.user.email) or (None, "")
        db.commit()
        # When each is used
        with probe:
            api = client.post(
                "/v1/auth/password-reset/confirm",
                json={"token": first, "new_password": NEW_PASSWORD},
            )
        assert api.status_code == 200
        assert probe.seen == [True]
        _, second = service.request_password_reset(db, email=account.user.email) or (None, "")
        db.commit()
        page = f"/dashboard/reset-password?token={second}"
        form = {"token": second, "new_password": PASSWORD + " again"}
        with probe:
            web = post_form(client, page, "/dashboard/reset-password", form)
        # Then the new password was hashed with the lock free each time
        assert web.status_code == 303
        assert probe.seen == [True]

    def test_registration_with_an_invite(
        self, client: TestClient, db: Session, probe: LockProbe, invite_only: None
    ) -> None:
        # Given an invite (spending it is the registration's first write)
        _, code = service.create_invite(db, valid_days=1)
        db.commit()
        body = {
            "organization_name": "Acme",
            "email": "owner@acme.example.com",
            "password": NEW_PASSWORD,
            "invite_code": code,
        }
        # When an organization registers with it
        with probe:
            response = client.post("/v1/auth/register", json=body)
        # Then the password was hashed with the lock free
        assert response.status_code == 201
        assert probe.seen == [True]

    def test_create_admin_on_the_command_line(self, db: Session, probe: LockProbe) -> None:
        with probe:
            result = CliRunner().invoke(
                cli,
                ["create-admin", "--organization", "Acme", "--email", "root@acme.example.com"],
                input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n",
            )
        assert result.exit_code == 0, result.output
        assert probe.seen == [True]
