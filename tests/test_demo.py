"""`stealth-recovery demo`: a full dashboard from one command, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from rich.console import Console
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from stealth_recovery.auth import service as auth_service
from stealth_recovery.auth.models import User
from stealth_recovery.cli import app as cli_app
from stealth_recovery.core import database
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.demo import DEMO_EMAIL, DEMO_SLUG, DemoError, DemoResult, run_demo
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.organizations.models import Organization
from stealth_recovery.recovery.models import FINAL_STATUSES, AttemptStatus, RecoveryAttempt
from stealth_recovery.retry.models import RetryPolicy


def _quiet() -> Console:
    return Console(file=open(os.devnull, "w"), force_terminal=False)


def _check_history(session: Session, result: DemoResult) -> None:
    """What any demo run must leave behind: consistent attempts, messages and policies."""
    org_id = result.organization_id
    attempts = session.scalars(
        select(RecoveryAttempt).where(RecoveryAttempt.organization_id == org_id)
    ).all()
    assert len(attempts) == result.attempts
    statuses = {a.status for a in attempts}
    assert {AttemptStatus.completed, AttemptStatus.cancelled} <= statuses
    now = utc_now()
    for attempt in attempts:
        assert attempt.retry_count <= attempt.max_retries
        if attempt.status == AttemptStatus.completed:
            # Which reminder brought the payment is what the chart shows.
            assert attempt.completed_after_step == attempt.retry_count
            assert attempt.completed_at is not None and attempt.completed_at <= now
        if attempt.status in FINAL_STATUSES:
            assert attempt.next_retry_at is None
        else:
            assert attempt.expires_at > now
    logs = session.scalars(
        select(NotificationLog).where(NotificationLog.organization_id == org_id)
    ).all()
    assert len(logs) == result.messages > 0
    by_id = {a.id: a for a in attempts}
    for log in logs:
        # A message exists only for a step the attempt went through.
        assert log.retry_number < by_id[log.attempt_id].retry_count
        assert log.created_at <= now
    assert {log.status for log in logs} >= {"delivered", "sent", "failed"}
    assert {log.channel for log in logs} == {"email", "sms"}
    policies = session.scalars(select(RetryPolicy).where(RetryPolicy.organization_id == org_id))
    assert sorted(p.is_active for p in policies) == [False, True]
    # The printed login works
    user = auth_service.authenticate(session, email=result.email, password=result.password)
    assert user.organization_id == org_id
    analyst = auth_service.authenticate(
        session, email=result.analyst_email, password=result.password
    )
    assert analyst.role == "analyst"


class TestOnTheTestDatabase:
    def test_creates_an_organization_full_of_history(self, db: Session) -> None:
        result = run_demo(attempts=80, days=21, seed=11, console=_quiet())
        _check_history(db, result)

    def test_refuses_cleanly_when_the_demo_exists(self, db: Session) -> None:
        run_demo(attempts=5, days=3, seed=1, console=_quiet())
        with pytest.raises(DemoError, match="exists already"):
            run_demo(attempts=5, days=3, seed=1, console=_quiet())
        count = db.scalar(select(func.count()).select_from(Organization))
        assert count == 1

    def test_reset_recreates_it(self, db: Session) -> None:
        first = run_demo(attempts=5, days=3, seed=1, console=_quiet())
        second = run_demo(attempts=12, days=3, seed=2, reset=True, console=_quiet())
        assert second.password != first.password
        assert db.scalar(select(func.count()).select_from(Organization)) == 1
        assert db.scalar(select(func.count()).select_from(RecoveryAttempt)) == 12
        assert db.scalar(select(func.count()).select_from(User)) == 2

    def test_refuses_in_production(self, db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ENVIRONMENT", "production")
        get_settings.cache_clear()
        try:
            with pytest.raises(DemoError, match="production"):
                run_demo(attempts=5, console=_quiet())
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()
        assert db.scalar(select(Organization.id).where(Organization.slug == DEMO_SLUG)) is None

    def test_the_command_prints_the_login(self, db: Session) -> None:
        logging_config = structlog.get_config()  # the command quiets the logs for its bar
        try:
            result = CliRunner().invoke(cli_app, ["demo", "--attempts", "15", "--seed", "3"])
            again = CliRunner().invoke(cli_app, ["demo", "--attempts", "15"])
        finally:
            structlog.configure(**logging_config)
        assert result.exit_code == 0, result.output
        assert DEMO_EMAIL in result.output
        assert "/dashboard" in result.output
        assert "password: demo-" in result.output
        assert again.exit_code == 1
        assert "exists already" in again.output


class TestLogin:
    def test_login_prints_a_new_password_that_works_and_keeps_the_data(self, db: Session) -> None:
        # Given a demo whose first password was lost with the terminal it was printed in
        first = run_demo(attempts=6, days=3, seed=4, console=_quiet())
        logging_config = structlog.get_config()
        try:
            # When the reader asks for the login again
            result = CliRunner().invoke(cli_app, ["demo", "--login"])
        finally:
            structlog.configure(**logging_config)
        # Then a new password is printed, the demo users log in with it, and nothing else moved
        assert result.exit_code == 0, result.output
        password = result.output.split("password: ")[1].split()[0]
        assert password != first.password and DEMO_EMAIL in result.output
        db.expire_all()
        for email in (DEMO_EMAIL, first.analyst_email):
            auth_service.authenticate(db, email=email, password=password)
        assert db.scalar(select(func.count()).select_from(RecoveryAttempt)) == 6

    def test_login_without_a_demo_says_what_to_run(self, db: Session) -> None:
        result = CliRunner().invoke(cli_app, ["demo", "--login"])
        assert result.exit_code == 1
        assert "run `stealth-recovery demo`" in result.output


@pytest.fixture
def sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the process at a fresh SQLite file, as `DATABASE_URL` would; restore afterwards."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setattr(database, "_engine", None)
    monkeypatch.setattr(database, "_session_factory", None)
    get_settings.cache_clear()
    try:
        yield url
    finally:
        engine = database._engine
        if engine is not None:
            engine.dispose()
        monkeypatch.undo()
        get_settings.cache_clear()


class TestOnAFreshSqliteFile:
    def test_migrates_then_fills_the_embedded_database(self, sqlite_file: str) -> None:
        # Given a SQLite file that does not exist yet (the embedded default)
        # When the demo runs
        result = run_demo(attempts=60, days=14, seed=5, console=_quiet())
        # Then the schema is there and the history is consistent
        with database.session_scope() as session:
            assert session.get_bind().dialect.name == "sqlite"
            _check_history(session, result)
