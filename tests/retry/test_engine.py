"""The retry engine against real PostgreSQL (or SQLite) and a real SMTP server on loopback."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

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
from stealth_recovery.retry.queue import cleanup_expired_attempts, process_retry_queue
from stealth_recovery.retry.runtime import get_runtime, reset_runtime, run_due_now
from stealth_recovery.retry.steps import prepare_steps
from tests.support.builders import make_account, make_attempt, make_policy, reload_attempt
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


class TestNoDuplicates:
    def test_a_step_delivered_twice_sends_once(self, db: Session, smtp_sink: SmtpSink) -> None:
        # Given a due attempt whose step is handed to workers twice (a redelivered task)
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
        step = ClaimedStep(attempt_id=attempt.id, retry_number=0)
        # When both run
        first = get_runtime().run_steps([step])
        second = get_runtime().run_steps([step])
        # Then one message went out
        assert (first.sent, second.sent) == (1, 0)
        assert len(smtp_sink.messages) == 1
        assert len(_logs(db, attempt.id)) == 1

    def test_a_step_run_concurrently_sends_once(self, db: Session, smtp_sink: SmtpSink) -> None:
        account = make_account(db)
        attempt = make_attempt(db, account.organization)
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

    def test_two_queue_runs_racing_over_a_thousand_attempts(
        self, db: Session, smtp_sink: SmtpSink, postgres_only: None
    ) -> None:
        # Given 1,000 due attempts
        account = make_account(db)
        attempts = [
            make_attempt(db, account.organization, email=f"c{i}@example.com") for i in range(1000)
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
