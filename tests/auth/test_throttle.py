"""Login throttling per account and per client address, for the API and the dashboard."""

from __future__ import annotations

import uuid

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from stealth_recovery.core.database import open_session
from stealth_recovery.core.settings import get_settings
from stealth_recovery.organizations.models import Organization
from tests.support.builders import PASSWORD, make_account
from tests.support.web import csrf_from


def _login(client: TestClient, email: str, password: str = "wrong password") -> int:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    return response.status_code


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGIN_FAILURES_PER_ACCOUNT", "3")
    monkeypatch.setenv("LOGIN_ATTEMPTS_PER_MINUTE", "6")
    get_settings.cache_clear()


class TestPerAccount:
    def test_after_the_failure_budget_even_the_right_password_waits(
        self, db: Session, limits: None
    ) -> None:
        # Given an account, and someone guessing its password
        email = make_account(db).user.email
        client = TestClient(create_app())
        guesses = [_login(client, email) for _ in range(3)]
        # When the right password comes after three failures
        response = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        # Then it is refused without being checked, and says how long to wait
        assert guesses == [401, 401, 401]
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60
        assert "too many login attempts" in response.json()["detail"]

    def test_another_account_is_not_affected(self, db: Session, limits: None) -> None:
        first, second = make_account(db).user.email, make_account(db).user.email
        client = TestClient(create_app())
        assert [_login(client, first) for _ in range(4)] == [401, 401, 401, 429]
        assert _login(client, second, PASSWORD) == 200

    def test_successes_do_not_spend_the_budget(self, db: Session, limits: None) -> None:
        email = make_account(db).user.email
        client = TestClient(create_app())
        assert [_login(client, email, PASSWORD) for _ in range(5)] == [200] * 5

    def test_the_account_is_counted_however_its_email_is_written(
        self, db: Session, limits: None
    ) -> None:
        email = make_account(db).user.email
        client = TestClient(create_app())
        spellings = [email, email.upper(), f"  {email}"]
        assert [_login(client, e) for e in spellings] == [401, 401, 401]
        assert _login(client, email, PASSWORD) == 429


class TestPerAddress:
    def test_one_address_spraying_many_accounts_is_stopped(self, db: Session, limits: None) -> None:
        # Given one address trying one password on many accounts
        client = TestClient(create_app())
        codes = [_login(client, f"user{n}@example.com") for n in range(7)]
        # Then after six attempts a minute it is refused, whichever account it names
        assert codes == [401] * 6 + [429]

    def test_other_addresses_keep_their_budget(self, db: Session, limits: None) -> None:
        app = create_app()
        flooding = TestClient(app, client=("203.0.113.1", 1000))
        other = TestClient(app, client=("203.0.113.2", 1000))
        email = make_account(db).user.email
        assert [_login(flooding, f"user{n}@example.com") for n in range(7)][-1] == 429
        assert _login(other, email, PASSWORD) == 200


class TestDashboard:
    def test_the_login_form_is_throttled_with_a_page_that_says_so(
        self, db: Session, limits: None
    ) -> None:
        email = make_account(db).user.email
        with TestClient(create_app()) as browser:
            token = csrf_from(browser.get("/dashboard/login").text)

            def submit(password: str) -> int:
                form = {"csrf_token": token, "email": email, "password": password}
                return browser.post("/dashboard/login", data=form).status_code

            codes = [submit("wrong password") for _ in range(3)]
            page = browser.post(
                "/dashboard/login", data={"csrf_token": token, "email": email, "password": PASSWORD}
            )
        assert codes == [401, 401, 401]
        assert page.status_code == 429
        assert "Too many login attempts" in page.text
        assert int(page.headers["Retry-After"]) >= 1

    def test_api_and_dashboard_spend_one_budget(self, db: Session, limits: None) -> None:
        email = make_account(db).user.email
        with TestClient(create_app()) as client:
            assert [_login(client, email) for _ in range(3)] == [401, 401, 401]
            token = csrf_from(client.get("/dashboard/login").text)
            form = {"csrf_token": token, "email": email, "password": PASSWORD}
            assert client.post("/dashboard/login", data=form).status_code == 429


class TestShared:
    def test_processes_sharing_redis_share_the_count(
        self, db: Session, redis_url: str, limits: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given two API processes configured with the same Redis
        monkeypatch.setenv("REDIS_URL", redis_url)
        get_settings.cache_clear()
        email = f"{uuid.uuid4().hex}@example.com"  # a key no earlier run has counted
        first, second = TestClient(create_app()), TestClient(create_app())
        try:
            # When failures for one account are spread over both
            codes = [_login(first, email), _login(second, email), _login(first, email)]
            # Then the next one is refused by either
            assert codes == [401, 401, 401]
            assert _login(second, email) == 429
        finally:
            client = redis.Redis.from_url(redis_url)
            for key in client.scan_iter("sr:ratelimit:login-address:*"):
                client.delete(key)


class TestSqliteWriteLock:
    def test_a_login_never_waits_for_the_write_lock(self, db: Session, engine: Engine) -> None:
        if engine.dialect.name != "sqlite":
            pytest.skip("about SQLite's single writer")
        # Given another unit of work holding SQLite's write lock (a long ingestion, say)
        email = make_account(db).user.email
        holder = open_session(write=True)
        holder.execute(update(Organization).values(name="busy"))
        try:
            # When a login (bad, then good) and a dashboard login arrive meanwhile
            client = TestClient(create_app())
            bad = _login(client, email)
            good = _login(client, email, PASSWORD)
            token = csrf_from(client.get("/dashboard/login").text)
            form = {"csrf_token": token, "email": email, "password": PASSWORD}
            web = client.post("/dashboard/login", data=form, follow_redirects=False)
        finally:
            holder.rollback()
            holder.close()
        # Then each is answered (a login only reads, so hashing never holds the lock)
        assert (bad, good, web.status_code) == (401, 200, 303)
