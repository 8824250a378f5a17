"""The embedded default: `serve` runs the queue in-process on a timer, no broker."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from stealth_recovery.core.settings import get_settings
from stealth_recovery.retry.scheduler import EmbeddedScheduler
from tests.support.builders import make_account, make_attempt
from tests.support.smtp import SmtpSink


class TestEmbeddedScheduler:
    def test_serve_sends_due_reminders_without_a_broker(
        self, db: Session, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given the embedded mode ticking every 200 ms and a due attempt
        monkeypatch.setenv("SCHEDULER_INTERVAL_SECONDS", "0.2")
        get_settings.cache_clear()
        account = make_account(db)
        make_attempt(db, account.organization, email="embedded@example.com")
        # When the app runs with its scheduler
        with TestClient(create_app(run_scheduler=True)):
            (message,) = smtp_sink.wait_for(1, timeout=10)
        # Then the reminder went out
        assert message.rcpt_tos == ["embedded@example.com"]

    def test_a_failing_tick_does_not_stop_the_scheduler(self) -> None:
        # Given a scheduler whose first pass fails (the database was restarting)
        class FlakyScheduler(EmbeddedScheduler):
            calls = 0

            def tick(self) -> None:
                self.calls += 1
                if self.calls == 1:
                    raise RuntimeError("database restarting")

        scheduler = FlakyScheduler(interval_seconds=0.05)
        # When it runs for a while
        scheduler.start()
        deadline = time.monotonic() + 5
        while scheduler.calls < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        scheduler.stop()
        # Then it kept ticking
        assert scheduler.calls >= 3
