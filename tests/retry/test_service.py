"""retry_now: the next step, now, through the queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from stealth_recovery.core.errors import Conflict
from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.retry.runtime import run_due_now
from stealth_recovery.retry.service import retry_now
from tests.support.builders import make_account, make_attempt, make_policy
from tests.support.smtp import SmtpSink


class TestRetryNow:
    def test_sends_the_next_step_on_the_next_queue_pass(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given an attempt whose first reminder is an hour away
        account = make_account(db)
        attempt = make_attempt(db, account.organization, due=False)
        # When an admin asks for it now
        assert retry_now(db, attempt=attempt) == 0
        db.commit()
        run_due_now()
        # Then it goes out at once
        assert len(smtp_sink.wait_for(1)) == 1
        db.refresh(attempt)
        assert attempt.retry_count == 1

    def test_final_attempt_is_a_conflict(self, db: Session) -> None:
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
        recovery_service.complete_attempt(db, attempt=attempt, paid_via="api")
        db.commit()
        with pytest.raises(Conflict, match="completed"):
            retry_now(db, attempt=attempt)

    def test_out_of_retries_is_a_conflict(self, db: Session, smtp_sink: SmtpSink) -> None:
        account = make_account(db)
        make_policy(db, account.organization, max_retries=1)
        attempt = make_attempt(db, account.organization)
        run_due_now()
        db.refresh(attempt)
        with pytest.raises(Conflict, match="reminders have been sent"):
            retry_now(db, attempt=attempt)

    def test_expired_is_a_conflict(self, db: Session) -> None:
        account = make_account(db)
        attempt = make_attempt(db, account.organization, due=False)
        with shifted_clock(timedelta(days=8)), pytest.raises(Conflict, match="expired"):
            retry_now(db, attempt=attempt)
        assert attempt.expires_at > utc_now()
