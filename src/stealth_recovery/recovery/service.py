"""Opening, completing and cancelling recovery attempts. Functions flush; callers commit."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import structlog
from sqlalchemy.orm import Session

from stealth_recovery.core.contacts import customer_country
from stealth_recovery.core.metrics import LATE_PAYMENTS, SECOND_PAYMENTS
from stealth_recovery.core.security import generate_token
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.organizations.models import Organization
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.payments.models import FailureEvent, Transaction
from stealth_recovery.recovery import repository
from stealth_recovery.recovery.errors import (
    AttemptNotFound,
    AttemptNotOpen,
    PayLinkCancelled,
    PayLinkExpired,
    PayLinkNotFound,
    PayLinkPaid,
)
from stealth_recovery.recovery.events import record_attempt_event
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt, window_values
from stealth_recovery.recovery.presenters import pay_url as pay_url
from stealth_recovery.recovery.schedule import EffectivePolicy, Schedule, next_due
from stealth_recovery.recovery.windows import UTC_PLACE, Place
from stealth_recovery.webhooks.models import EventType

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OpenedAttempt:
    attempt: RecoveryAttempt
    created: bool  # False when an open attempt for the transaction already existed
    # Nothing opened: `attempt` is the attempt a hard decline of this payment stopped before.
    hard_declined_before: bool = False


def schedule_of(attempt: RecoveryAttempt) -> Schedule:
    """The schedule frozen on the attempt when it opened, its send window included."""
    return Schedule(
        max_retries=attempt.max_retries,
        initial_delay_minutes=attempt.initial_delay_minutes,
        backoff_multiplier=attempt.backoff_multiplier,
        max_delay_minutes=attempt.max_delay_minutes,
        window=attempt.send_window,
    )


def place_of(transaction: Transaction) -> Place:
    """Where the transaction's customer is, for send windows: the time zone stored with the
    transaction (given or derived at ingestion) and the country of the phone number, else of
    the locale (public holidays)."""
    return Place(
        zone=transaction.customer_timezone,
        country=customer_country(transaction.customer_phone, transaction.customer_locale),
    )


# Tries at opening before giving up: each try that inserts nothing finds the open attempt that
# blocked it, unless that attempt ended in between (a payment landing at that very moment).
_OPEN_TRIES = 3


def open_attempt(
    session: Session,
    *,
    transaction: Transaction,
    failure: FailureEvent | None,
    policy: EffectivePolicy,
    decline_code: str | None = None,
    decline_category: DeclineCategory = DeclineCategory.soft,
    ttl: timedelta | None = None,
    unless_hard_declined: Sequence[str | None] | None = None,
) -> OpenedAttempt:
    """Open a recovery attempt for a failed transaction, unless one is already open.

    `policy` is the organization's effective retry policy (the caller resolves it); its numbers
    and channels are copied onto the attempt. A hard decline opens the attempt already
    `cancelled`, so no reminder is ever sent for it. With `unless_hard_declined` (the payment's
    reference, payment and invoice ids), nothing opens when an attempt of this payment was
    stopped by a hard decline: that attempt is returned with `hard_declined_before`. Opening
    is one INSERT; only when it inserts nothing is the reason read.
    """
    now = utc_now()
    lifetime = ttl or timedelta(days=get_settings().attempt_ttl_days)
    hard = decline_category == DeclineCategory.hard
    place = place_of(transaction) if policy.schedule.window is not None else UTC_PLACE
    for _ in range(_OPEN_TRIES):
        attempt = RecoveryAttempt(
            organization_id=transaction.organization_id,
            transaction_id=transaction.id,
            failure_event_id=failure.id if failure else None,
            token=generate_token(),
            status=AttemptStatus.cancelled if hard else AttemptStatus.created,
            expires_at=now + lifetime,
            retry_count=0,
            max_retries=policy.schedule.max_retries,
            next_retry_at=None
            if hard
            else next_due(policy.schedule, steps_done=0, last_at=now, place=place),
            policy_id=policy.policy_id,
            initial_delay_minutes=policy.schedule.initial_delay_minutes,
            backoff_multiplier=policy.schedule.backoff_multiplier,
            max_delay_minutes=policy.schedule.max_delay_minutes,
            enabled_channels=list(policy.enabled_channels),
            **window_values(policy.schedule.window),
            decline_code=decline_code,
            decline_category=decline_category,
            cancelled_at=now if hard else None,
            cancel_reason=f"hard decline: {decline_code}" if hard else None,
            created_at=now,
            updated_at=now,
        )
        stored = repository.insert_open(session, attempt, unless_hard_declined=unless_hard_declined)
        if stored is not None:
            record_attempt_event(session, stored, EventType.attempt_opened)
            if hard:
                record_attempt_event(
                    session, stored, EventType.cancelled, {"reason": stored.cancel_reason}
                )
            return OpenedAttempt(stored, created=True)
        if unless_hard_declined is not None:
            sticky = repository.get_hard_declined(
                session,
                organization_id=transaction.organization_id,
                transaction_id=transaction.id,
                refs=unless_hard_declined,
            )
            if sticky is not None:
                return OpenedAttempt(sticky, created=False, hard_declined_before=True)
        existing = repository.get_open_for_transaction(session, transaction_id=transaction.id)
        if existing is not None:
            return OpenedAttempt(existing, created=False)
    raise RuntimeError(f"transaction {transaction.id}: no attempt opened and none open")


def open_attempt_of(session: Session, *, transaction_id: int) -> RecoveryAttempt | None:
    """The transaction's open attempt, if any (there is at most one)."""
    return repository.get_open_for_transaction(session, transaction_id=transaction_id)


def get_attempt(session: Session, *, organization_id: int, attempt_id: int) -> RecoveryAttempt:
    attempt = repository.get_in_organization(
        session, organization_id=organization_id, attempt_id=attempt_id
    )
    if attempt is None:
        raise AttemptNotFound("recovery attempt not found")
    return attempt


class PaidVia:
    """What `RecoveryAttempt.paid_via` holds: the payment that completed the attempt.

    Every completion names its payment, so a later payment can be told apart from the same
    payment reported again (`record_payment`). Stripe's: "debt" (the failed invoice or payment
    intent itself, e.g. paid by Stripe's own retry) and "checkout:<payment intent or session
    id>" (a recovery Checkout). Ours, where no provider payment exists: the constants below.
    """

    TEST_PAYMENT = "test_payment"  # the pay page's test path: no money moved
    API = "api"  # `POST /v1/recoveries/{id}/complete`: paid outside a connected provider
    DEMO = "demo"  # the demo's simulated customers
    DEBT = "debt"

    @staticmethod
    def checkout(payment_id: str) -> str:
        return f"checkout:{payment_id}"


def complete_attempt(
    session: Session,
    *,
    attempt: RecoveryAttempt,
    paid_via: str,
    test_payment: bool = False,
) -> bool:
    """Mark the attempt paid: no reminder is sent after this commits. False if already final.

    `paid_via` names the payment (`PaidVia`), so a later payment by another route is flagged
    as a second payment rather than taken for this one. `test_payment`: completed on the pay
    page's test path (no money moved); the attempt is labelled so and never counted as
    recovered.
    """
    changed = repository.finish(
        session,
        attempt_id=attempt.id,
        status=AttemptStatus.completed,
        at=utc_now(),
        paid_via=paid_via,
    )
    session.refresh(attempt)
    if changed and test_payment:
        attempt.test_payment = True
        session.flush()
    if changed:
        record_attempt_event(session, attempt, EventType.recovered)
    return changed


def allows_test_payments(organization: Organization) -> bool:
    """Whether the pay page may complete payments without a provider (TEST_PAYMENTS, or an
    organization the demo made)."""
    return get_settings().test_payments or organization.is_test


class PaymentOutcome(StrEnum):
    completed = "completed"  # the open attempt is paid
    completed_after_end = "completed_after_end"  # it had ended: money in, recovered late
    second_payment = "second_payment"  # already paid by another payment: flagged
    already_completed = "already_completed"  # the same payment reported again


def record_payment(session: Session, *, attempt: RecoveryAttempt, paid_via: str) -> PaymentOutcome:
    """Money came in for this attempt: it is never reported as lost.

    `paid_via`: the provider payment (`PaidVia.DEBT`, `PaidVia.checkout(id)`). An open attempt
    completes; a cancelled or expired one completes too, marked `paid_after_end`. A completed
    one was paid before, by whatever path (a provider payment, the pay page's test payment, the
    API, or a completion from before payments were named): a different payment gets
    `second_payment_at` (logged as `attempt_paid_twice` and counted in
    `stealth_recovery_second_payments_total`: the merchant should refund one of the two). The
    same payment reported again (another event about it, or Stripe delivering it again) changes
    nothing and is counted once.
    """
    if complete_attempt(session, attempt=attempt, paid_via=paid_via):
        return PaymentOutcome.completed
    now = utc_now()
    if repository.complete_after_end(session, attempt_id=attempt.id, at=now, paid_via=paid_via):
        session.refresh(attempt)
        record_attempt_event(session, attempt, EventType.recovered_after_end)
        LATE_PAYMENTS.inc()
        log.info("attempt_paid_after_end", attempt_id=attempt.id, paid_via=paid_via)
        return PaymentOutcome.completed_after_end
    session.refresh(attempt)
    if attempt.status != AttemptStatus.completed or attempt.paid_via == paid_via:
        return PaymentOutcome.already_completed
    if attempt.second_payment_ref == paid_via:
        return PaymentOutcome.second_payment  # the flagged payment again: flagged and counted once
    flagged = repository.flag_second_payment(session, attempt_id=attempt.id, at=now, ref=paid_via)
    SECOND_PAYMENTS.inc()
    log.warning(
        "attempt_paid_twice",
        attempt_id=attempt.id,
        first_payment=attempt.paid_via or "unrecorded",
        second_payment=paid_via,
        test_payment_first=attempt.test_payment,
        flagged_before=None if flagged else attempt.second_payment_ref,
    )
    if flagged:
        session.refresh(attempt)
    return PaymentOutcome.second_payment


def cancel_attempt(session: Session, *, attempt: RecoveryAttempt, reason: str) -> RecoveryAttempt:
    """Stop an open attempt (operator action, hard decline). 409 when it is already final."""
    if not repository.finish(
        session,
        attempt_id=attempt.id,
        status=AttemptStatus.cancelled,
        at=utc_now(),
        reason=reason,
    ):
        session.refresh(attempt)
        raise AttemptNotOpen(f"attempt is already {attempt.status}")
    session.refresh(attempt)
    record_attempt_event(session, attempt, EventType.cancelled, {"reason": reason})
    return attempt


def stop_attempt(session: Session, *, attempt: RecoveryAttempt, reason: str) -> bool:
    """Cancel the attempt if it is still open (the debt ended elsewhere); False if final."""
    changed = repository.finish(
        session, attempt_id=attempt.id, status=AttemptStatus.cancelled, at=utc_now(), reason=reason
    )
    session.refresh(attempt)
    if changed:
        record_attempt_event(session, attempt, EventType.cancelled, {"reason": reason})
    return changed


def apply_later_decline(
    session: Session, *, attempt: RecoveryAttempt, code: str | None, category: DeclineCategory
) -> bool:
    """Apply what a later failure of the same payment says; True when it stopped the attempt.

    A hard decline cancels an open attempt (no reminder will go out again); a first decline
    code sets the category the reminders are worded for. A final attempt is left as it is.
    """
    if not attempt.is_open:
        return False
    if category == DeclineCategory.hard:
        if not repository.finish(
            session,
            attempt_id=attempt.id,
            status=AttemptStatus.cancelled,
            at=utc_now(),
            reason=f"hard decline: {code}",
        ):
            session.refresh(attempt)
            return False  # paid or cancelled since it was read
        session.refresh(attempt)
        attempt.decline_code = code
        attempt.decline_category = category
        session.flush()
        record_attempt_event(
            session, attempt, EventType.cancelled, {"reason": attempt.cancel_reason}
        )
        return True
    if code and attempt.decline_code is None:
        attempt.decline_code = code
        attempt.decline_category = category
        session.flush()
    return False


_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


def attempt_by_token(session: Session, token: str) -> RecoveryAttempt:
    """The attempt behind a pay link: 404 unknown, 410 expired or final."""
    # Anything that cannot be a token we issued is unknown without asking the database.
    if not _TOKEN.fullmatch(token):
        raise PayLinkNotFound("this payment link does not exist")
    return attempt_for_customer(session, token)


def attempt_for_customer(session: Session, token: str) -> RecoveryAttempt:
    """The attempt behind a pay link: 404 unknown, 410 expired or final."""
    attempt = repository.get_by_token(session, token)
    if attempt is None:
        raise PayLinkNotFound("this payment link does not exist")
    if attempt.status == AttemptStatus.completed:
        raise PayLinkPaid("this payment has already been made")
    if attempt.status == AttemptStatus.cancelled:
        raise PayLinkCancelled("this payment link has been cancelled")
    if attempt.status == AttemptStatus.expired or (attempt.expires_at <= utc_now()):
        raise PayLinkExpired("this payment link has expired")
    return attempt


def mark_opened(session: Session, *, attempt: RecoveryAttempt) -> None:
    if repository.mark_opened(session, attempt_id=attempt.id, at=utc_now()):
        session.refresh(attempt)
        record_attempt_event(session, attempt, EventType.pay_link_opened)
