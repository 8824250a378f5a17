"""Stripe events and the retry engine together: who gets reminded, on which schedule, and when
nothing may go out any more. Real engine, real SMTP server on loopback, signed webhooks."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.database import get_session_factory
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.integrations.stripe import webhooks
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.retry import policy
from stealth_recovery.retry.models import RetryPolicy
from stealth_recovery.retry.queue import claim_batch
from stealth_recovery.retry.runtime import get_runtime, run_due_now
from tests.support.builders import see_committed
from tests.support.smtp import SmtpSink
from tests.support.stripe_events import StripeOrg, event, payment_intent, sign


def _attempt_for(db: Session, pi: dict[str, object]) -> RecoveryAttempt:
    see_committed(db)
    attempt = db.scalar(
        select(RecoveryAttempt)
        .join(Transaction, Transaction.id == RecoveryAttempt.transaction_id)
        .where(Transaction.external_ref == pi["id"])
    )
    assert attempt is not None
    return attempt


def _log_count(db: Session) -> int:
    see_committed(db)
    return int(db.scalar(select(func.count()).select_from(NotificationLog)) or 0)


def _set_policy(db: Session, organization_id: int, **numbers: int | float) -> RetryPolicy:
    values: dict[str, int | float] = {
        "max_retries": 3,
        "initial_delay_minutes": 60,
        "backoff_multiplier": 2.0,
        "max_delay_minutes": 1440,
        **numbers,
    }
    created = policy.create_policy(
        db,
        organization_id=organization_id,
        name=f"policy {values}",
        max_retries=int(values["max_retries"]),
        initial_delay_minutes=int(values["initial_delay_minutes"]),
        backoff_multiplier=float(values["backoff_multiplier"]),
        max_delay_minutes=int(values["max_delay_minutes"]),
        enabled_channels=["email"],
    )
    db.commit()
    return created


class TestHardDecline:
    def test_a_hard_decline_never_gets_a_message(
        self, stripe_org: StripeOrg, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given one customer whose card was stolen and one short of funds
        stolen = payment_intent(email="thief@example.com", decline_code="stolen_card")
        short = payment_intent(email="short@example.com", decline_code="insufficient_funds")
        stripe_org.post(event("payment_intent.payment_failed", stolen))
        stripe_org.post(event("payment_intent.payment_failed", short))
        # When the whole schedule passes and beyond
        for hours in (1, 3, 7, 15, 24, 24 * 6):
            with shifted_clock(timedelta(hours=hours, seconds=5)):
                run_due_now()
        # Then only the soft decline was reminded
        assert {m.rcpt_tos[0] for m in smtp_sink.messages} == {"short@example.com"}
        assert len(smtp_sink.messages) == 3
        # And the hard decline has no log row at all and stays cancelled
        hard = _attempt_for(db, stolen)
        assert (hard.status, hard.retry_count, hard.next_retry_at) == ("cancelled", 0, None)
        see_committed(db)
        logs = db.scalar(
            select(func.count())
            .select_from(NotificationLog)
            .where(NotificationLog.attempt_id == hard.id)
        )
        assert logs == 0


class TestWordingFitsTheDecline:
    def test_a_card_the_customer_must_fix_is_asked_to_be_updated(
        self, stripe_org: StripeOrg, db: Session, smtp_sink: SmtpSink
    ) -> None:
        expired = payment_intent(email="ana@example.com", decline_code=None, code="expired_card")
        stripe_org.post(event("payment_intent.payment_failed", expired))
        assert _attempt_for(db, expired).decline_category == "customer_action"
        with shifted_clock(timedelta(hours=1, seconds=5)):
            run_due_now()
        (message,) = smtp_sink.wait_for(1)
        assert "update your card" in message.subject.lower()

    def test_a_temporary_decline_is_asked_to_try_again(
        self, stripe_org: StripeOrg, db: Session, smtp_sink: SmtpSink
    ) -> None:
        short = payment_intent(email="ana@example.com", decline_code="insufficient_funds")
        stripe_org.post(event("payment_intent.payment_failed", short))
        with shifted_clock(timedelta(hours=1, seconds=5)):
            run_due_now()
        (message,) = smtp_sink.wait_for(1)
        assert "update your card" not in message.subject.lower()
        assert "try the payment again" in message.body("plain")


class TestPolicyFrozenOnTheAttempt:
    def test_a_policy_edited_after_the_attempt_opened_leaves_its_schedule(
        self, stripe_org: StripeOrg, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given an attempt opened under a 60 min, ×2, three-reminder policy
        original = _set_policy(db, stripe_org.organization_id)
        pi = payment_intent(email="ana@example.com")
        stripe_org.post(event("payment_intent.payment_failed", pi))
        opened = _attempt_for(db, pi)
        first_due = opened.next_retry_at
        assert first_due is not None
        # When the policy row is edited and another, faster policy becomes active
        original.initial_delay_minutes = 1
        original.max_retries = 10
        db.commit()
        _set_policy(
            db,
            stripe_org.organization_id,
            max_retries=10,
            initial_delay_minutes=5,
            backoff_multiplier=1,
            max_delay_minutes=5,
        )
        # Then the attempt keeps the numbers it opened with
        frozen = _attempt_for(db, pi)
        assert (
            frozen.max_retries,
            frozen.initial_delay_minutes,
            frozen.backoff_multiplier,
            frozen.max_delay_minutes,
            frozen.next_retry_at,
        ) == (3, 60, 2.0, 1440, first_due)
        # And the reminders follow them: nothing at the new policy's 5 minutes, one at 60
        with shifted_clock(timedelta(minutes=6)):
            assert run_due_now() == 0
        with shifted_clock(timedelta(minutes=60, seconds=5)):
            assert run_due_now() == 1
        sent = _attempt_for(db, pi)
        assert sent.last_retry_at is not None and sent.next_retry_at is not None
        assert sent.next_retry_at - sent.last_retry_at == timedelta(minutes=120)
        # And it ends after its own three reminders, not the new policy's ten
        for minutes in (60 + 125, 60 + 120 + 245):
            with shifted_clock(timedelta(minutes=minutes)):
                run_due_now()
        with shifted_clock(timedelta(days=2)):
            run_due_now()
        assert len(smtp_sink.messages) == 3
        assert _attempt_for(db, pi).status == "cancelled"


class TestPaidWhileAReminderIsClaimed:
    def test_failure_then_success_within_a_minute_while_the_step_is_claimed(
        self, stripe_org: StripeOrg, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given a one-minute policy and a failed payment
        _set_policy(db, stripe_org.organization_id, initial_delay_minutes=1, max_delay_minutes=1)
        pi = payment_intent(email="ana@example.com")
        stripe_org.post(event("payment_intent.payment_failed", pi))
        # And the queue has claimed its first reminder (the lease is taken, nothing sent yet)
        lease = timedelta(seconds=get_settings().queue_lease_seconds)
        with shifted_clock(timedelta(seconds=61)):
            steps = claim_batch(now=utc_now(), limit=100, lease=lease).steps
        assert [s.attempt_id for s in steps] == [_attempt_for(db, pi).id]
        # When Stripe reports the payment succeeded, within the same minute as the failure
        succeeded = payment_intent(pi_id=str(pi["id"]), status="succeeded")
        response = stripe_org.post(event("payment_intent.succeeded", succeeded))
        assert response.json()["outcome"] == "attempt_completed"
        # And the worker then runs the claimed step
        with shifted_clock(timedelta(seconds=62)):
            report = get_runtime().run_steps(steps)
        # Then nothing goes out, then or ever
        assert report.sent == 0
        for later in (timedelta(minutes=10), timedelta(hours=2), timedelta(days=3)):
            with shifted_clock(later):
                run_due_now()
        assert smtp_sink.messages == []
        assert _log_count(db) == 0
        attempt = _attempt_for(db, pi)
        assert (attempt.status, attempt.retry_count, attempt.next_retry_at) == (
            "completed",
            0,
            None,
        )

    def test_a_success_being_committed_keeps_the_queue_off_the_attempt(
        self, stripe_org: StripeOrg, db: Session, smtp_sink: SmtpSink, postgres_only: None
    ) -> None:
        # Given a failed payment whose first reminder is due
        _set_policy(db, stripe_org.organization_id, initial_delay_minutes=1, max_delay_minutes=1)
        pi = payment_intent(email="ana@example.com")
        stripe_org.post(event("payment_intent.payment_failed", pi))
        # And the success webhook is being handled: the attempt is completed, not yet committed
        body = json.dumps(
            event(
                "payment_intent.succeeded", payment_intent(pi_id=str(pi["id"]), status="succeeded")
            )
        ).encode()
        webhook_session = get_session_factory()()
        _, outcome = webhooks.receive(
            webhook_session,
            org_slug=stripe_org.slug,
            payload=body,
            signature=sign(body, stripe_org.webhook_secret),
        )
        assert outcome == webhooks.Outcome.attempt_completed
        # When the queue runs meanwhile, in another thread
        results: list[int] = []
        with shifted_clock(timedelta(seconds=61)):
            runner = threading.Thread(target=lambda: results.append(run_due_now()))
            runner.start()
            runner.join(timeout=60)
        # Then it passes over the locked attempt instead of sending
        assert results == [0]
        webhook_session.commit()
        webhook_session.close()
        # And once the success is committed, nothing is ever sent
        for later in (timedelta(minutes=2), timedelta(days=1)):
            with shifted_clock(later):
                assert run_due_now() == 0
        assert smtp_sink.messages == []
        assert _attempt_for(db, pi).status == "completed"
