"""compute_stats: each figure's definition, on real rows."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery.service import cancel_attempt, complete_attempt
from stealth_recovery.retry.stats import compute_stats
from tests.support.builders import add_log, make_account, make_attempt


class TestComputeStats:
    def test_empty_organization_is_all_zero(self, db: Session) -> None:
        org = make_account(db).organization
        stats = compute_stats(db, organization_id=org.id)
        assert stats.model_dump() == {
            "total_attempts": 0,
            "pending_retries": 0,
            "sent_count": 0,
            "completed_count": 0,
            "test_payment_count": 0,
            "failed_count": 0,
            "unconfirmed_count": 0,
            "outbox_count": 0,
            "avg_retry_count": 0.0,
            "recovered_after_end_count": 0,
        }

    def test_each_figure_follows_its_definition(self, db: Session) -> None:
        # Given four attempts: open with a reminder due, open with none left, paid, cancelled
        org = make_account(db).organization
        pending = make_attempt(db, org)
        exhausted = make_attempt(db, org)
        paid = make_attempt(db, org)
        stopped = make_attempt(db, org)
        # (all reminders out, in the grace period before it is cancelled as exhausted)
        exhausted.retry_count = exhausted.max_retries
        paid.retry_count = 1
        pending.retry_count = 1
        db.flush()
        complete_attempt(db, attempt=paid, paid_via="api")
        cancel_attempt(db, attempt=stopped, reason="operator")
        # and messages in every status
        statuses = ["pending", "sent", "delivered", "failed", "bounced", "unconfirmed", "cancelled"]
        for number, status in enumerate(statuses):
            add_log(db, pending, retry_number=number, status=status)
        add_log(db, paid, retry_number=0, status="delivered")
        db.commit()
        # When the stats are computed
        stats = compute_stats(db, organization_id=org.id)
        # Then
        assert stats.total_attempts == 4
        assert stats.pending_retries == 1  # open and a next reminder scheduled
        assert stats.completed_count == 1
        assert stats.sent_count == 3  # sent or delivered; pending is not sent
        assert stats.failed_count == 2  # failed or bounced
        assert stats.unconfirmed_count == 1  # handed over without an answer; never resent
        assert stats.avg_retry_count == round((1 + 3 + 1 + 0) / 4, 2)

    def test_outbox_messages_are_kept_apart_from_sent_ones(self, db: Session) -> None:
        # Given one reminder that went to a customer and two the local outbox kept
        org = make_account(db).organization
        attempt = make_attempt(db, org)
        add_log(db, attempt, retry_number=0, status="sent")
        add_log(db, attempt, retry_number=1, status="sent", provider="outbox")
        add_log(db, attempt, retry_number=2, status="sent", provider="outbox")
        db.commit()
        # When the stats are computed
        stats = compute_stats(db, organization_id=org.id)
        # Then only the one that went out counts as sent; the outbox is counted on its own
        assert (stats.sent_count, stats.outbox_count) == (1, 2)

    def test_average_is_rounded_to_two_decimals(self, db: Session) -> None:
        org = make_account(db).organization
        attempts = [make_attempt(db, org) for _ in range(3)]
        attempts[0].retry_count = 1
        db.commit()
        assert compute_stats(db, organization_id=org.id).avg_retry_count == 0.33

    def test_other_organizations_never_count(self, db: Session) -> None:
        mine = make_account(db).organization
        theirs = make_account(db).organization
        attempt = make_attempt(db, theirs)
        add_log(db, attempt, retry_number=0, status="sent")
        db.commit()
        assert compute_stats(db, organization_id=mine.id).total_attempts == 0
        assert compute_stats(db, organization_id=mine.id).sent_count == 0

    def test_read_from_the_daily_counters_alone(self, db: Session, engine: Engine) -> None:
        # Given many attempts and messages
        org = make_account(db).organization
        for number in range(5):
            add_log(db, make_attempt(db, org), retry_number=number, status="sent")
        db.commit()
        statements: list[str] = []

        def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            statements.append(statement)

        # When the stats are computed
        event.listen(engine, "before_cursor_execute", record)
        try:
            stats = compute_stats(db, organization_id=org.id)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        # Then one statement read them, from the counters, never from the rows themselves
        assert (stats.total_attempts, stats.sent_count) == (5, 5)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 1
        assert "daily_counts" in selects[0]
        assert "recovery_attempts" not in selects[0] and "notification_logs" not in selects[0]


class TestSince:
    def test_a_midnight_counts_whole_days(self, db: Session) -> None:
        # Given attempts opened two days ago, yesterday and today
        org = make_account(db).organization
        today = utc_now().replace(hour=0, minute=0, second=0, microsecond=0)
        for days_ago in (2, 1, 0):
            attempt = make_attempt(db, org, opened_at=today - timedelta(days=days_ago))
            add_log(db, attempt, status="sent", at=today - timedelta(days=days_ago))
        # When the stats are asked from yesterday's midnight
        stats = compute_stats(db, organization_id=org.id, since=today - timedelta(days=1))
        # Then yesterday's and today's count
        assert (stats.total_attempts, stats.sent_count) == (2, 2)

    def test_a_moment_inside_a_day_counts_from_that_moment(self, db: Session) -> None:
        # Given two attempts paid yesterday, one before 12:00 and one after, and one today
        org = make_account(db).organization
        yesterday = utc_now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        for moment in (yesterday.replace(hour=9), yesterday.replace(hour=15), utc_now()):
            attempt = make_attempt(db, org, opened_at=moment)
            attempt.retry_count = 2
            db.commit()
            complete_attempt(db, attempt=attempt, paid_via="api")
            add_log(db, attempt, status="failed", at=moment)
        db.commit()
        # When the stats are asked from yesterday noon
        stats = compute_stats(db, organization_id=org.id, since=yesterday.replace(hour=12))
        # Then the part of yesterday after noon and today count, nothing before
        assert (stats.total_attempts, stats.completed_count, stats.failed_count) == (2, 2, 2)
        assert stats.avg_retry_count == 2.0
