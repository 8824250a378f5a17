"""The retry engine against real PostgreSQL (or SQLite) and a real SMTP server on loopback."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from datetime import time as day_time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.notifications.sender import ProviderNotifier
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.recovery.repository import ClaimedStep
from stealth_recovery.recovery.windows import ALL_DAYS, Place, SendWindow, is_open, parse_clock
from stealth_recovery.retry.queue import cleanup_expired_attempts, process_retry_queue
from stealth_recovery.retry.runtime import get_runtime, reset_runtime, run_due_now
from stealth_recovery.retry.steps import prepare_steps
from tests.support.builders import (
    Account,
    make_account,
    make_attempt,
    make_policy,
    reload_attempt,
)
from tests.support.smtp import SmtpSink


def _logs(db: Session, attempt_id: int) -> list[NotificationLog]:
    db.expire_all()
    stmt = select(NotificationLog).where(NotificationLog.attempt_id == attempt_id)
    return list(db.scalars(stmt.order_by(NotificationLog.retry_number)))


class TestDueAttemptIsSent:
    def test_reminder_reaches_the_customer_and_the_next_is_scheduled(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given an organization with the seed's policy and one due attempt
        account = make_account(db)
        make_policy(db, account.organization, initial_delay_minutes=60, backoff_multiplier=2)
        attempt = make_attempt(db, account.organization, email="ana@example.com")
        # When the queue runs
        assert run_due_now() == 1
        # Then the customer got one email with the link
        (message,) = smtp_sink.wait_for(1)
        assert message.rcpt_tos == ["ana@example.com"]
        assert account.organization.name in message.subject
        assert f"/pay/{attempt.token}" in message.body("plain")
        # And the log says sent, with the provider's id
        (log,) = _logs(db, attempt.id)
        assert (log.status, log.channel, log.retry_number, log.provider) == (
            "sent",
            "email",
            0,
            "smtp",
        )
        assert log.sent_at is not None and log.provider_message_id
        # And the next reminder is due two hours (60 × 2) after this one
        fresh = reload_attempt(db, attempt)
        assert fresh.status == "sent" and fresh.retry_count == 1
        assert fresh.last_retry_at is not None and fresh.next_retry_at is not None
        assert fresh.next_retry_at - fresh.last_retry_at == timedelta(minutes=120)

    def test_not_due_attempt_is_left_alone(self, db: Session, smtp_sink: SmtpSink) -> None:
        account = make_account(db)
        attempt = make_attempt(db, account.organization, due=False)
        assert run_due_now() == 0
        assert smtp_sink.messages == []
        assert reload_attempt(db, attempt).retry_count == 0

    def test_whole_schedule_runs_with_the_clock(self, db: Session, smtp_sink: SmtpSink) -> None:
        # Given a three-reminder policy
        account = make_account(db)
        make_policy(db, account.organization, max_retries=3, initial_delay_minutes=60)
        attempt = make_attempt(db, account.organization, due=False)
        # When time passes, reminder by reminder
        for hours, expected in ((1, 1), (3, 2), (7, 3)):
            with shifted_clock(timedelta(hours=hours, seconds=5)):
                run_due_now()
            assert len(smtp_sink.messages) == expected
        # Then after the grace period the exhausted attempt is cancelled
        with shifted_clock(timedelta(hours=7 + 8, seconds=10)):
            run_due_now()
        fresh = reload_attempt(db, attempt)
        assert (fresh.status, fresh.retry_count, fresh.cancel_reason) == (
            "cancelled",
            3,
            "retries exhausted",
        )
        assert len(smtp_sink.messages) == 3
        assert [log.retry_number for log in _logs(db, attempt.id)] == [0, 1, 2]


def _open_now_window() -> dict[str, object]:
    """A send window (in UTC) open now that closes within the hour: the reminder due now goes,
    and the next one (hours later) is moved to tomorrow's opening."""
    now = utc_now()
    minute = now.hour * 60 + now.minute
    start, end = max(0, minute - 60), min(1440, minute + 30)
    return {
        "window": SendWindow(start, end, ALL_DAYS, skip_holidays=True),
    }


@pytest.fixture(params=["no window", "window"])
def windowed(request: pytest.FixtureRequest) -> bool:
    """Runs a test without a send window, then with one open now that closes soon."""
    return bool(request.param == "window")


def _given_policy(db: Session, account: Account, windowed: bool) -> None:
    if windowed:
        make_policy(db, account.organization, **_open_now_window())


def _check_windows(db: Session, attempts: list[RecoveryAttempt], windowed: bool) -> None:
    """With a window, every next reminder is due inside it (UTC, the customers' zone)."""
    if not windowed:
        return
    db.expire_all()
    for attempt in attempts:
        fresh = reload_attempt(db, attempt)
        assert fresh.send_window is not None and fresh.next_retry_at is not None
        assert is_open(fresh.next_retry_at, fresh.send_window, Place("UTC"))
        assert fresh.next_retry_at - utc_now() > timedelta(hours=12)


class TestSendWindow:
    def test_a_step_due_at_two_in_the_night_goes_at_nine(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given a policy sending 09:00–20:00 in the customer's time, first reminder after 1 h
        account = make_account(db)
        make_policy(
            db,
            account.organization,
            initial_delay_minutes=60,
            window=SendWindow(parse_clock("09:00"), parse_clock("20:00")),
        )
        # And a payment of a customer in Berlin failing at 01:00 local, next night
        berlin = ZoneInfo("Europe/Berlin")
        local_now = utc_now().astimezone(berlin)
        opened = datetime.combine(local_now.date() + timedelta(days=1), day_time(1), tzinfo=berlin)
        attempt = make_attempt(
            db, account.organization, timezone="Europe/Berlin", opened_at=opened, due=False
        )
        # Then its first reminder, due at 02:00, is set for 09:00
        nine = opened.replace(hour=9)
        assert reload_attempt(db, attempt).next_retry_at == nine
        db.rollback()  # end this read, so the engine's commits are seen (SQLite reads a snapshot)
        # When the queue runs at 02:00 local, nothing goes
        with shifted_clock(opened.replace(hour=2) + timedelta(seconds=5) - utc_now()):
            assert run_due_now() == 0
        assert smtp_sink.messages == []
        # And when it runs at 09:00 local, the reminder goes
        with shifted_clock(nine + timedelta(seconds=5) - utc_now()):
            assert run_due_now() == 1
        assert len(smtp_sink.wait_for(1)) == 1
        (log,) = _logs(db, attempt.id)
        assert log.status == "sent" and log.sent_at is not None
        assert log.sent_at.astimezone(berlin).hour == 9
        # And the next one is due exactly 2 h (60 × 2) after it: 11:00, inside the window
        fresh = reload_attempt(db, attempt)
        assert fresh.next_retry_at is not None and fresh.last_retry_at is not None
        assert fresh.next_retry_at - fresh.last_retry_at == timedelta(minutes=120)

    def test_the_window_is_the_customers_zone_derived_from_the_phone(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given a 09:00–20:00 window and a customer with a New York number and no zone given
        account = make_account(db)
        make_policy(db, account.organization, window=SendWindow(540, 1200))
        new_york = ZoneInfo("America/New_York")
        local_now = utc_now().astimezone(new_york)
        opened = datetime.combine(
            local_now.date() + timedelta(days=1), day_time(1), tzinfo=new_york
        )
        attempt = make_attempt(
            db,
            account.organization,
            phone="+1 212 555 0123",
            timezone=None,
            locale="en",
            opened_at=opened,
            due=False,
        )
        # Then the transaction holds New York's zone and the reminder waits for 09:00 there
        fresh = reload_attempt(db, attempt)
        assert fresh.next_retry_at == opened.replace(hour=9)
        assert run_due_now() == 0


class TestNoDuplicates:
    def test_a_step_delivered_twice_sends_once(
        self, db: Session, smtp_sink: SmtpSink, windowed: bool
    ) -> None:
        # Given a due attempt whose step is handed to workers twice (a redelivered task)
        account = make_account(db)
        _given_policy(db, account, windowed)
        attempt = make_attempt(db, account.organization, timezone="UTC")
        step = ClaimedStep(attempt_id=attempt.id, retry_number=0)
        # When both run
        first = get_runtime().run_steps([step])
        second = get_runtime().run_steps([step])
        # Then one message went out
        assert (first.sent, second.sent) == (1, 0)
        assert len(smtp_sink.messages) == 1
        assert len(_logs(db, attempt.id)) == 1
        _check_windows(db, [attempt], windowed)

    def test_a_step_run_concurrently_sends_once(
        self, db: Session, smtp_sink: SmtpSink, windowed: bool
    ) -> None:
        account = make_account(db)
        _given_policy(db, account, windowed)
        attempt = make_attempt(db, account.organization, timezone="UTC")
        smtp_sink.latency = 0.3
        step = ClaimedStep(attempt_id=attempt.id, retry_number=0)
        threads = [
            threading.Thread(target=get_runtime().run_steps, args=([step],)) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(smtp_sink.messages) == 1
        _check_windows(db, [attempt], windowed)

    def test_two_queue_runs_racing_over_a_thousand_attempts(
        self, db: Session, smtp_sink: SmtpSink, postgres_only: None, windowed: bool
    ) -> None:
        # Given 1,000 due attempts (with a send window open now that closes soon, or none)
        account = make_account(db)
        _given_policy(db, account, windowed)
        attempts = [
            make_attempt(db, account.organization, email=f"c{i}@example.com", timezone="UTC")
            for i in range(1000)
        ]
        claimed: list[list[ClaimedStep]] = [[], []]
        barrier = threading.Barrier(2)

        def queue_run(i: int) -> None:
            barrier.wait()
            process_retry_queue(dispatch=claimed[i].extend)

        # When two queue runs race to claim them
        threads = [threading.Thread(target=queue_run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then every attempt was claimed exactly once
        ids = [s.attempt_id for s in claimed[0] + claimed[1]]
        assert sorted(ids) == sorted(a.id for a in attempts)
        # And sending both claims (each twice, as if redelivered) sends one message per attempt
        runtime = get_runtime()
        senders = [
            threading.Thread(target=runtime.run_steps, args=(claimed[i],)) for i in (0, 1, 0, 1)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert len(smtp_sink.messages) == 1000
        assert len({m.rcpt_tos[0] for m in smtp_sink.messages}) == 1000
        db.expire_all()
        statuses = db.execute(
            select(NotificationLog.status, func.count()).group_by(NotificationLog.status)
        ).all()
        assert statuses == [("sent", 1000)]
        advanced = db.scalar(
            select(func.count())
            .select_from(RecoveryAttempt)
            .where(RecoveryAttempt.retry_count == 1)
        )
        assert advanced == 1000
        _check_windows(db, attempts[:50], windowed)


class TestNeverChaseAPaidCustomer:
    def test_completed_between_claim_and_send_gets_nothing(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given a step claimed by the queue
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
        steps: list[ClaimedStep] = []
        process_retry_queue(dispatch=steps.extend)
        assert [s.attempt_id for s in steps] == [attempt.id]
        # When the customer pays before the worker sends it
        with session_scope() as session:
            paid = session.get(RecoveryAttempt, attempt.id)
            assert paid is not None
            assert recovery_service.complete_attempt(session, attempt=paid, paid_via="api")
        report = get_runtime().run_steps(steps)
        # Then nothing is sent and nothing is logged
        assert report.sent == 0 and smtp_sink.messages == []
        assert _logs(db, attempt.id) == []
        fresh = reload_attempt(db, attempt)
        assert (fresh.status, fresh.retry_count, fresh.next_retry_at) == ("completed", 0, None)

    def test_completed_while_in_flight_is_not_advanced(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given a step whose message is at the provider when the customer pays
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
        smtp_sink.latency = 0.5
        worker = threading.Thread(target=run_due_now)
        worker.start()
        time.sleep(0.2)
        with session_scope() as session:
            paid = session.get(RecoveryAttempt, attempt.id)
            assert paid is not None
            recovery_service.complete_attempt(session, attempt=paid, paid_via="api")
        worker.join()
        # Then the attempt stays completed with no next reminder
        fresh = reload_attempt(db, attempt)
        assert (fresh.status, fresh.next_retry_at) == ("completed", None)
        with shifted_clock(timedelta(days=2)):
            run_due_now()
        assert len(smtp_sink.messages) <= 1


class TestEndings:
    def test_expired_attempt_is_marked_expired_and_not_sent(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
        with shifted_clock(timedelta(days=8)):
            run_due_now()
        assert smtp_sink.messages == []
        assert reload_attempt(db, attempt).status == "expired"

    def test_daily_cleanup_expires_every_open_attempt_past_expiry(self, db: Session) -> None:
        account = make_account(db)
        old = make_attempt(db, account.organization, due=False)
        with session_scope() as session:
            count = cleanup_expired_attempts(session, now=utc_now() + timedelta(days=8))
        assert count == 1
        assert reload_attempt(db, old).status == "expired"

    def test_hard_bounce_is_logged_with_the_servers_message(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        account = make_account(db)
        attempt = make_attempt(db, account.organization, email="gone@example.com")
        smtp_sink.reject("gone@example.com", 550, "5.1.1 No such user here")
        run_due_now()
        (log,) = _logs(db, attempt.id)
        assert log.status == "bounced"
        assert log.error_message and "No such user" in log.error_message
        assert log.failed_at is not None
        # The step still counts: the schedule goes on
        assert reload_attempt(db, attempt).retry_count == 1

    def test_unreachable_smtp_server_defers_the_step_and_the_worker_goes_on(
        self, db: Session, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account = make_account(db)
        first = make_attempt(db, account.organization, email="a@example.com")
        smtp_sink.stop()
        run_due_now()
        (log,) = _logs(db, first.id)
        assert log.status == "pending" and log.error_message
        assert reload_attempt(db, first).retry_count == 0
        # When the server is back, the deferred step and a new attempt go out
        restarted = SmtpSink().start()
        try:
            monkeypatch.setenv("SMTP_PORT", str(restarted.port))
            get_settings.cache_clear()
            reset_runtime()
            second = make_attempt(db, account.organization, email="b@example.com")
            with shifted_clock(timedelta(minutes=1)):
                run_due_now()
            assert sorted(m.rcpt_tos[0] for m in restarted.wait_for(2)) == [
                "a@example.com",
                "b@example.com",
            ]
            assert _logs(db, first.id)[0].status == "sent"
            assert _logs(db, second.id)[0].status == "sent"
        finally:
            restarted.stop()

    def test_channel_without_contact_is_logged_as_skipped(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        account = make_account(db)
        make_policy(db, account.organization, enabled_channels=["email", "sms"])
        attempt = make_attempt(db, account.organization, phone=None)
        run_due_now()
        logs = {log.channel: log for log in _logs(db, attempt.id)}
        assert logs["email"].status == "sent"
        assert logs["sms"].status == "failed"
        assert logs["sms"].error_message and "phone" in logs["sms"].error_message
        assert len(smtp_sink.messages) == 1


class TestLease:
    def test_step_left_pending_by_a_dead_worker_is_sent_after_the_lease(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given a worker that claimed a step, wrote its pending log row and died
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
        steps: list[ClaimedStep] = []
        process_retry_queue(dispatch=steps.extend)

        with session_scope() as session:
            prepare_steps(
                session,
                steps=steps,
                notifier=ProviderNotifier.from_settings(get_settings()),
                now=utc_now(),
                lease=timedelta(minutes=5),
            )
        # When the queue runs before the lease ends, nothing happens
        assert run_due_now() == 0
        # And after the lease, the step is claimed again and sent
        with shifted_clock(timedelta(minutes=6)):
            assert run_due_now() == 1
        assert len(smtp_sink.messages) == 1
        (log,) = _logs(db, attempt.id)
        assert (log.status, log.send_attempts) == ("sent", 2)
        assert reload_attempt(db, attempt).retry_count == 1
