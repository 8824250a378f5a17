"""Faults in one process: crashes, outages, hung servers, payments and stalled owners.

Real PostgreSQL (or SQLite) and a real SMTP server on loopback; the clock is moved instead of
waiting for leases and backoff. Every test counts messages at the server.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.notifications.sender import ProviderNotifier
from stealth_recovery.notifications.types import SendOutcome
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.recovery.repository import ClaimedStep
from stealth_recovery.retry import lease
from stealth_recovery.retry.lease import HandOverGate
from stealth_recovery.retry.queue import process_retry_queue
from stealth_recovery.retry.runtime import reset_runtime, run_due_now
from stealth_recovery.retry.steps import PreparedStep, StepResult, prepare_steps, record_steps
from tests.support.builders import make_account, make_attempt
from tests.support.smtp import SmtpSink

LEASE = timedelta(minutes=5)  # QUEUE_LEASE_SECONDS default


def _fresh(db: Session) -> Session:
    # End the read transaction: on SQLite (WAL) it would keep showing its first snapshot.
    db.rollback()
    return db


def _statuses(db: Session) -> Counter[str]:
    _fresh(db)
    return Counter(db.scalars(select(NotificationLog.status)))


def _advanced(db: Session) -> int:
    _fresh(db)
    stmt = select(func.count()).select_from(RecoveryAttempt).where(RecoveryAttempt.retry_count == 1)
    return int(db.scalar(stmt) or 0)


def _due_attempts(db: Session, count: int) -> list[RecoveryAttempt]:
    account = make_account(db)
    return [make_attempt(db, account.organization, email=f"c{i}@example.com") for i in range(count)]


def _claim_and_prepare(owner: str) -> list[PreparedStep]:
    """What a worker does before it sends: queue claim, then the send claim in its name."""
    steps: list[ClaimedStep] = []
    process_retry_queue(dispatch=steps.extend)
    with session_scope() as session:
        return prepare_steps(
            session,
            steps=steps,
            notifier=ProviderNotifier.from_settings(get_settings()),
            now=utc_now(),
            lease=LEASE,
            owner=owner,
        )


class TestWorkerDied:
    def test_messages_being_handed_over_are_unconfirmed_and_never_resent(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given a worker that prepared 10 steps, began handing 4 over, and was killed
        _due_attempts(db, 10)
        prepared = _claim_and_prepare(owner="w:dead")
        log_ids = [step.messages[0].log_id for step in prepared]
        with session_scope() as session:
            marked = lease.mark_handing_over(
                session, log_ids=log_ids[:4], owner="w:dead", now=utc_now()
            )
        assert len(marked) == 4
        # When the queue runs after one lease
        with shifted_clock(LEASE + timedelta(seconds=1)):
            assert run_due_now() == 10
        # Then the 6 never handed over are sent, the 4 are unconfirmed and not sent again
        assert len(smtp_sink.messages) == 6
        assert _statuses(db) == {"sent": 6, "unconfirmed": 4}
        assert _advanced(db) == 10
        # And nothing goes out for them later either
        with shifted_clock(LEASE * 3):
            run_due_now()
        assert len(smtp_sink.messages) == 6

    def test_killed_then_paid_leaves_no_row_pending(self, db: Session, smtp_sink: SmtpSink) -> None:
        # Given a worker killed with one message handed over and one not
        attempts = _due_attempts(db, 2)
        prepared = _claim_and_prepare(owner="w:dead")
        with session_scope() as session:
            lease.mark_handing_over(
                session, log_ids=[prepared[0].messages[0].log_id], owner="w:dead", now=utc_now()
            )
        # When both customers pay, and the queue passes by
        for attempt in attempts:
            with session_scope() as session:
                paid = session.get(RecoveryAttempt, attempt.id)
                assert paid is not None and recovery_service.complete_attempt(
                    session, attempt=paid, paid_via="api"
                )
        run_due_now()
        # Then each row is settled with its reason, and nothing was sent
        assert _statuses(db) == {"unconfirmed": 1, "cancelled": 1}
        assert smtp_sink.messages == []
        _fresh(db)
        reasons = {log.status: log.error_message for log in db.scalars(select(NotificationLog))}
        assert reasons["unconfirmed"] and "outcome unknown" in reasons["unconfirmed"]
        assert reasons["cancelled"] and "attempt ended" in reasons["cancelled"]


class TestStalledOwner:
    def test_an_owner_past_its_lease_is_fenced_off(self, db: Session, smtp_sink: SmtpSink) -> None:
        # Given a worker that prepared 5 steps, then stalled past its lease without a heartbeat
        _due_attempts(db, 5)
        stalled = _claim_and_prepare(owner="w:stalled")
        # And another worker that took the steps over and sent them
        with shifted_clock(LEASE + timedelta(seconds=1)):
            assert run_due_now() == 5
        assert len(smtp_sink.messages) == 5
        # When the stalled worker wakes up and sends what it had prepared
        notifier = ProviderNotifier.from_settings(get_settings())
        gate = HandOverGate("w:stalled")

        async def send_all() -> list[SendOutcome]:
            outcomes = [
                await notifier.send(m, gate.for_message(m.log_id))
                for step in stalled
                for m in step.messages
            ]
            await notifier.aclose()
            return outcomes

        outcomes = asyncio.run(send_all())
        # Then every hand-over is refused, and nothing reaches the server twice
        assert [o.status for o in outcomes] == ["withheld"] * 5
        assert len(smtp_sink.messages) == 5
        # And a late record in its name (say, failures it saw before stalling) changes nothing
        late = SendOutcome("failed", "smtp", error_message="late")
        with session_scope() as session:
            report = record_steps(
                session,
                results=[StepResult(step, [late]) for step in stalled],
                now=utc_now(),
                owner="w:stalled",
            )
        assert report.advanced == 0
        assert _statuses(db) == {"sent": 5}
        assert _advanced(db) == 5


class TestOutage:
    def test_smtp_down_delays_the_step_and_it_goes_out_once_when_back(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given 20 due reminders and an SMTP server that hangs up on everyone
        _due_attempts(db, 20)
        smtp_sink.down = True
        # When the queue runs
        run_due_now()
        # Then nothing is lost: rows stay pending with the error, no attempt moved past the step
        assert _statuses(db) == {"pending": 20}
        assert _advanced(db) == 0
        _fresh(db)
        next_at = db.scalars(select(RecoveryAttempt.next_retry_at)).all()
        assert all(at is not None and at <= utc_now() + timedelta(minutes=1) for at in next_at)
        # When the server is back and a minute has passed
        smtp_sink.down = False
        reset_runtime()  # a new worker process: its breaker has not seen the outage
        with shifted_clock(timedelta(minutes=1)):
            run_due_now()
        # Then every reminder arrives once
        assert Counter(m.rcpt_tos[0] for m in smtp_sink.messages) == {
            f"c{i}@example.com": 1 for i in range(20)
        }
        assert _statuses(db) == {"sent": 20}
        assert _advanced(db) == 20

    def test_the_breaker_stops_calls_to_a_provider_that_is_down(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given 40 due reminders and an SMTP server that is down
        _due_attempts(db, 40)
        smtp_sink.down = True
        # When the queue runs twice, the second time when every step is due again
        run_due_now()
        first_pass = smtp_sink.connections
        with shifted_clock(timedelta(minutes=2)):
            run_due_now()
        # Then the quick retries stopped once the breaker opened, and the second pass made no
        # call at all (the breaker's cooldown had not passed): the steps were deferred again
        assert first_pass < 40 * 2
        assert smtp_sink.connections == first_pass
        assert _statuses(db) == {"pending": 40}
        assert _advanced(db) == 0

    def test_a_step_failing_past_its_deadline_fails_and_the_schedule_moves_on(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        _due_attempts(db, 3)
        smtp_sink.down = True
        run_due_now()
        assert _advanced(db) == 0
        # When the step is due again after its deadline (6 hours by default), still failing
        with shifted_clock(timedelta(hours=6, minutes=1)):
            run_due_now()
        # Then its messages are failed with the reason, and the attempts moved on
        assert _statuses(db) == {"failed": 3}
        assert _advanced(db) == 3
        _fresh(db)
        errors = db.scalars(select(NotificationLog.error_message)).all()
        assert all(e and "gave up" in e for e in errors)


class TestHungServer:
    def test_no_answer_after_data_is_unconfirmed_and_never_resent(
        self, db: Session, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a server that queues each message but answers after our SMTP timeout
        monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "0.5")
        get_settings.cache_clear()
        smtp_sink.hang_seconds = 2.0
        _due_attempts(db, 10)
        # When the queue runs, and again after the lease
        run_due_now()
        smtp_sink.hang_seconds = 0.0
        with shifted_clock(LEASE * 2):
            run_due_now()
        # Then each customer got one message; the log says unconfirmed, not failed
        assert Counter(m.rcpt_tos[0] for m in smtp_sink.messages) == {
            f"c{i}@example.com": 1 for i in range(10)
        }
        assert _statuses(db) == {"unconfirmed": 10}
        assert _advanced(db) == 10


class TestPaymentDuringSending:
    def test_a_payment_committed_before_the_hand_over_stops_the_message(
        self, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given 20 reminders claimed and on their way, held by the server before DATA
        attempts = _due_attempts(db, 20)
        smtp_sink.hold_rcpt = threading.Event()
        worker = threading.Thread(target=run_due_now)
        worker.start()
        try:
            _wait_for_pending(db, 20)
            # When half the customers pay while their messages are in flight
            for attempt in attempts[::2]:
                with session_scope() as session:
                    paid = session.get(RecoveryAttempt, attempt.id)
                    assert paid is not None
                    assert recovery_service.complete_attempt(session, attempt=paid, paid_via="api")
        finally:
            smtp_sink.hold_rcpt.set()
            worker.join(60)
        # Then only the customers who did not pay get a reminder
        received = {m.rcpt_tos[0] for m in smtp_sink.messages}
        assert received == {f"c{i}@example.com" for i in range(1, 20, 2)}
        assert len(smtp_sink.messages) == 10
        # And the paid ones' rows say why nothing was sent
        assert _statuses(db) == {"sent": 10, "cancelled": 10}


def _wait_for_pending(db: Session, count: int) -> None:
    for _ in range(1000):
        if _statuses(db).get("pending", 0) >= count:
            return
        threading.Event().wait(0.02)
    raise AssertionError(f"{count} pending rows never appeared")
