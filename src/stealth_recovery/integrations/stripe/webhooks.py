"""Stripe webhook events: verify, record once, and open or close recovery attempts.

Everything an event does happens in the request's transaction, together with its
`psp_events` row: either both commit or neither does (and Stripe delivers the event again).
The work is a few indexed reads and writes; sending reminders is the retry queue's job.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

import stripe
import structlog
from sqlalchemy.orm import Session

from stealth_recovery.core.api import load_json_document
from stealth_recovery.core.errors import DomainError, InvalidInput, NotFound
from stealth_recovery.core.time import utc_now
from stealth_recovery.integrations.stripe import repository
from stealth_recovery.integrations.stripe.events import (
    MalformedEvent,
    PaymentRefs,
    StripeEvent,
    failure_input,
    parse_event,
    refs_of,
)
from stealth_recovery.integrations.stripe.schemas import FAILURE_EVENTS, SUCCESS_EVENTS
from stealth_recovery.integrations.stripe.service import webhook_secret_of
from stealth_recovery.organizations import repository as organizations
from stealth_recovery.payments import service as payments
from stealth_recovery.recovery import service as recovery
from stealth_recovery.recovery.models import AttemptStatus, DeclineCategory, RecoveryAttempt

log = structlog.get_logger(__name__)

# Stripe's documented default: a signature older than five minutes is refused (replay defence).
SIGNATURE_TOLERANCE_SECONDS = 300
# Stripe retries a delivery for up to three days: how late a failure can arrive after a success.
STRIPE_RETRY_WINDOW = timedelta(days=3)


class InvalidWebhook(DomainError):
    """A webhook we cannot trust or read: nothing is stored."""

    status_code = 400


class Outcome(StrEnum):
    attempt_opened = "attempt_opened"
    attempt_exists = "attempt_exists"
    attempt_cancelled = "attempt_cancelled"  # a hard decline: no reminder will ever go out
    attempt_completed = "attempt_completed"
    already_final = "already_final"
    no_matching_attempt = "no_matching_attempt"
    awaiting_payment = "awaiting_payment"  # Checkout completed, asynchronous payment pending
    already_paid = "already_paid"  # a failure delivered after its payment's success
    own_checkout_failure = "own_checkout_failure"  # a decline on our Checkout: not a new debt
    unusable = "unusable"  # signed and recorded, but not a payment we can recover
    ignored = "ignored"
    duplicate = "duplicate"


def receive(
    session: Session, *, org_slug: str, payload: bytes, signature: str | None
) -> tuple[str, Outcome]:
    """Verify one delivery, record it once, and act on it; returns (event id, outcome)."""
    organization = organizations.get_by_slug(session, org_slug)
    if organization is None:
        raise NotFound("unknown organization")
    connection = repository.get_connection(session, organization_id=organization.id)
    if connection is None:
        raise NotFound("Stripe is not connected for this organization")
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature, webhook_secret_of(connection), SIGNATURE_TOLERANCE_SECONDS
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        log.warning("stripe_signature_rejected", organization_id=organization.id, error=str(exc))
        raise InvalidWebhook("invalid Stripe-Signature") from None
    try:
        raw = load_json_document(payload)
        event = parse_event(raw)
    except (ValueError, MalformedEvent) as exc:
        raise InvalidWebhook(f"malformed event: {exc}") from None

    recorded = repository.record_event(
        session,
        organization_id=organization.id,
        event_id=event.id,
        event_type=event.type,
        payload=raw,
    )
    if recorded is None:
        first = repository.get_event(session, event_id=event.id)
        if first is not None and first.organization_id != organization.id:
            # Event ids are global at Stripe: one account feeding two organizations' endpoints.
            log.warning(
                "stripe_event_seen_by_another_organization",
                organization_id=organization.id,
                first_organization_id=first.organization_id,
                event_id=event.id,
            )
        log.info("stripe_event_replayed", organization_id=organization.id, event_id=event.id)
        return event.id, Outcome.duplicate

    if event.type in FAILURE_EVENTS:
        outcome = _on_failure(session, organization_id=organization.id, event=event)
    elif event.type in SUCCESS_EVENTS:
        outcome = _on_success(session, organization_id=organization.id, event=event)
    else:
        outcome = Outcome.ignored
    if outcome != Outcome.ignored:
        repository.mark_processed(session, event=recorded, at=utc_now())
    log.info(
        "stripe_event_handled",
        organization_id=organization.id,
        event_id=event.id,
        event_type=event.type,
        outcome=outcome.value,
    )
    return event.id, outcome


def _on_failure(session: Session, *, organization_id: int, event: StripeEvent) -> Outcome:
    refs = refs_of(event)
    if refs.attempt_id is not None:
        # The customer's card was declined on the Checkout page of a recovery we already run;
        # Checkout lets them try again, and the attempt's reminders continue.
        return Outcome.own_checkout_failure
    if repository.success_recorded(
        session,
        organization_id=organization_id,
        object_ids=refs.candidates,
        event_types=SUCCESS_EVENTS,
        since=utc_now() - STRIPE_RETRY_WINDOW,
    ):
        return Outcome.already_paid
    known = repository.find_transaction(
        session, organization_id=organization_id, refs=refs.candidates
    )
    data = failure_input(
        event, refs, external_ref=known.external_ref if known else refs.external_ref
    )
    try:
        with session.begin_nested():
            opened = payments.record_failure(session, organization_id=organization_id, data=data)
    except InvalidInput as exc:
        log.warning(
            "stripe_failure_unusable",
            organization_id=organization_id,
            event_id=event.id,
            field=exc.field,
            rule=exc.rule,
        )
        return Outcome.unusable
    attempt = opened.attempt
    category = data.decline_category or DeclineCategory.soft
    if opened.created:
        return (
            Outcome.attempt_cancelled
            if attempt.status == AttemptStatus.cancelled
            else Outcome.attempt_opened
        )
    return _refine_open_attempt(session, attempt=attempt, code=data.decline_code, category=category)


def _refine_open_attempt(
    session: Session, *, attempt: RecoveryAttempt, code: str | None, category: DeclineCategory
) -> Outcome:
    """A later event about the same payment may say more than the first one (an invoice event
    carries no decline code; its payment intent's does)."""
    if recovery.apply_later_decline(session, attempt=attempt, code=code, category=category):
        return Outcome.attempt_cancelled
    if attempt.is_open:
        return Outcome.attempt_exists
    if category == DeclineCategory.hard and attempt.cancel_reason == f"hard decline: {code}":
        return Outcome.attempt_cancelled  # `record_failure` stopped it for this very decline
    return Outcome.already_final


def _attempt_for_success(
    session: Session, *, organization_id: int, refs: PaymentRefs
) -> RecoveryAttempt | None:
    if refs.attempt_id is not None and refs.organization_id in (None, organization_id):
        found = repository.attempt_in_organization(
            session, organization_id=organization_id, attempt_id=refs.attempt_id
        )
        if found is not None:
            return found
    if refs.checkout_session_id:
        found = repository.attempt_by_checkout_session(
            session, organization_id=organization_id, checkout_session_id=refs.checkout_session_id
        )
        if found is not None:
            return found
    transaction = repository.find_transaction(
        session, organization_id=organization_id, refs=refs.candidates
    )
    if transaction is None:
        return None
    return repository.open_attempt_for_transaction(
        session, transaction_id=transaction.id
    ) or repository.latest_attempt_for_transaction(session, transaction_id=transaction.id)


def _on_success(session: Session, *, organization_id: int, event: StripeEvent) -> Outcome:
    if event.type == "checkout.session.completed" and event.object.get("payment_status") not in (
        "paid",
        "no_payment_required",
    ):
        # Bank debits and vouchers complete Checkout before the money arrives; Stripe sends
        # checkout.session.async_payment_succeeded when it does.
        return Outcome.awaiting_payment
    refs = refs_of(event)
    attempt = _attempt_for_success(session, organization_id=organization_id, refs=refs)
    if attempt is None:
        return Outcome.no_matching_attempt
    if recovery.complete_attempt(session, attempt=attempt):
        log.info("attempt_completed_by_stripe", attempt_id=attempt.id, event_id=event.id)
        return Outcome.attempt_completed
    return Outcome.already_final
