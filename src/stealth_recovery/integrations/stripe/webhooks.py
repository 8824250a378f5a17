"""Stripe webhook events: verify, record once, and open or close recovery attempts.

Everything an event does happens in the request's transaction, together with its
`psp_events` row: either both commit or neither does (and Stripe delivers the event again).
The work is a few indexed reads and writes; sending reminders is the retry queue's job.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from enum import StrEnum

import stripe
import structlog
from sqlalchemy.orm import Session

from stealth_recovery.core.api import load_json_document
from stealth_recovery.core.errors import DomainError, InvalidInput
from stealth_recovery.core.time import utc_now
from stealth_recovery.ingestion import service as ingestion
from stealth_recovery.integrations.stripe import repository, service
from stealth_recovery.integrations.stripe.events import (
    MalformedEvent,
    PaymentRefs,
    StripeEvent,
    debt_already_ended,
    failure_input,
    parse_event,
    refs_of,
)
from stealth_recovery.integrations.stripe.schemas import (
    DEBT_ENDED_EVENTS,
    FAILURE_EVENTS,
    SUCCESS_EVENTS,
)
from stealth_recovery.integrations.stripe.service import webhook_secret_of
from stealth_recovery.organizations import repository as organizations
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery import repository as attempts_repository
from stealth_recovery.recovery import service as recovery
from stealth_recovery.recovery.models import RecoveryAttempt

log = structlog.get_logger(__name__)

# Stripe's documented default: a signature older than five minutes is refused (replay defence).
SIGNATURE_TOLERANCE_SECONDS = 300
# Stripe retries a delivery for up to three days: how late a failure can arrive after a success.
STRIPE_RETRY_WINDOW = timedelta(days=3)


class InvalidWebhook(DomainError):
    """A webhook we cannot trust or read: nothing is stored."""

    status_code = 400
    type = "invalid_webhook"


class Outcome(StrEnum):
    attempt_opened = "attempt_opened"
    attempt_exists = "attempt_exists"
    attempt_cancelled = "attempt_cancelled"  # a hard decline, or the debt ended in Stripe
    attempt_completed = "attempt_completed"
    attempt_completed_after_end = "attempt_completed_after_end"  # paid after it had ended
    second_payment = "second_payment"  # paid again by another payment: flagged on the attempt
    already_final = "already_final"
    no_matching_attempt = "no_matching_attempt"
    awaiting_payment = "awaiting_payment"  # Checkout completed, asynchronous payment pending
    already_paid = "already_paid"  # a failure delivered after its payment's success
    debt_ended = "debt_ended"  # a failure delivered after the debt was voided or cancelled
    own_checkout_failure = "own_checkout_failure"  # a decline on our Checkout: not a new debt
    own_checkout_event = "own_checkout_event"  # our Checkout's payment canceled: not the debt's
    unusable = "unusable"  # signed and recorded, but not a payment we can recover
    ignored = "ignored"
    duplicate = "duplicate"


_REFUSED = "invalid Stripe-Signature"


def _verify(payload: bytes, signature: str | None, secret: str) -> bool:
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature, secret, SIGNATURE_TOLERANCE_SECONDS
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        return False
    return True


def receive(
    session: Session, *, org_slug: str, payload: bytes, signature: str | None
) -> tuple[str, Outcome]:
    """Verify one delivery, record it once per organization, and act on it.

    Returns (event id, outcome). An unknown slug, an organization without Stripe and a bad
    signature all raise the same `InvalidWebhook`, so the endpoint never tells which
    organizations exist.
    """
    organization = organizations.get_by_slug(session, org_slug)
    connection = (
        repository.get_connection(session, organization_id=organization.id)
        if organization is not None
        else None
    )
    if organization is None or connection is None:
        # Do the same work as for a known organization, then answer as for a bad signature.
        _verify(payload, signature, "whsec_" + secrets.token_urlsafe(24))
        log.warning("stripe_webhook_refused", reason="no connected organization")
        raise InvalidWebhook(_REFUSED)
    if not _verify(payload, signature, webhook_secret_of(connection)):
        log.warning("stripe_signature_rejected", organization_id=organization.id)
        raise InvalidWebhook(_REFUSED)
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
        log.info("stripe_event_replayed", organization_id=organization.id, event_id=event.id)
        return event.id, Outcome.duplicate

    if event.type in FAILURE_EVENTS:
        outcome = _on_failure(session, organization_id=organization.id, event=event)
    elif event.type in SUCCESS_EVENTS:
        outcome = _on_success(session, organization_id=organization.id, event=event)
    elif event.type in DEBT_ENDED_EVENTS:
        outcome = _on_debt_ended(session, organization_id=organization.id, event=event)
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


def _linked(session: Session, *, organization_id: int, refs: PaymentRefs) -> PaymentRefs:
    """The event's ids, completed with the invoice <-> payment intent link it leaves out.

    Asked of Stripe only when no transaction is known by the event's ids yet: once learned, the
    link is stored on the transaction (`psp_invoice_id`, `psp_payment_id`) and found there.
    """
    if not refs.link_missing:
        return refs
    if repository.find_transaction(session, organization_id=organization_id, refs=refs.candidates):
        return refs
    link = service.find_invoice_link(
        session,
        organization_id=organization_id,
        invoice_id=refs.invoice_id,
        payment_intent_id=None if refs.invoice_id else refs.payment_intent_id,
    )
    if link is None:
        return refs
    return replace(refs, invoice_id=link.invoice_id, payment_intent_id=link.payment_intent_id)


def _debt_ended_before(
    session: Session, *, organization_id: int, event: StripeEvent, refs: PaymentRefs
) -> bool:
    if debt_already_ended(event.object):
        return True
    ids = refs.candidates + [i for i in (refs.subscription_id, refs.customer_id) if i]
    return repository.event_recorded(
        session,
        organization_id=organization_id,
        object_ids=ids,
        event_types=tuple(DEBT_ENDED_EVENTS),
        since=utc_now() - STRIPE_RETRY_WINDOW,
    )


def _on_failure(session: Session, *, organization_id: int, event: StripeEvent) -> Outcome:
    refs = refs_of(event)
    if refs.attempt_id is not None:
        # The customer's card was declined on the Checkout page of a recovery we already run;
        # Checkout lets them try again, and the attempt's reminders continue.
        return Outcome.own_checkout_failure
    refs = _linked(session, organization_id=organization_id, refs=refs)
    if repository.event_recorded(
        session,
        organization_id=organization_id,
        object_ids=refs.candidates,
        event_types=SUCCESS_EVENTS,
        since=utc_now() - STRIPE_RETRY_WINDOW,
    ):
        return Outcome.already_paid
    if _debt_ended_before(session, organization_id=organization_id, event=event, refs=refs):
        return Outcome.debt_ended
    known = repository.find_transaction(
        session, organization_id=organization_id, refs=refs.candidates
    )
    data = failure_input(
        event, refs, external_ref=known.external_ref if known else refs.external_ref
    )
    try:
        with session.begin_nested():
            result = ingestion.record_failure(session, organization_id=organization_id, data=data)
    except InvalidInput as exc:
        log.warning(
            "stripe_failure_unusable",
            organization_id=organization_id,
            event_id=event.id,
            field=exc.field,
            rule=exc.rule,
        )
        return Outcome.unusable
    if result.outcome is ingestion.Ingested.hard_declined:
        service.close_checkout(session, attempt=result.attempt)
    return _FAILURE_OUTCOMES[result.outcome]


_FAILURE_OUTCOMES = {
    ingestion.Ingested.opened: Outcome.attempt_opened,
    ingestion.Ingested.hard_declined: Outcome.attempt_cancelled,
    ingestion.Ingested.already_open: Outcome.attempt_exists,
    ingestion.Ingested.duplicate: Outcome.attempt_exists,
    ingestion.Ingested.already_paid: Outcome.already_final,
    ingestion.Ingested.already_ended: Outcome.already_final,
}


def _transactions_of_debt(
    session: Session, *, organization_id: int, event: StripeEvent, refs: PaymentRefs
) -> Sequence[Transaction]:
    if event.type == "customer.deleted":
        if not refs.customer_id:
            return []
        return repository.transactions_of_customer(
            session, organization_id=organization_id, customer_id=refs.customer_id
        )
    if event.type == "customer.subscription.deleted":
        if not refs.subscription_id:
            return []
        return repository.transactions_of_subscription(
            session,
            organization_id=organization_id,
            subscription_id=refs.subscription_id,
            refs=refs.candidates,
        )
    found = repository.find_transaction(
        session, organization_id=organization_id, refs=refs.candidates
    )
    return [found] if found is not None else []


def _on_debt_ended(session: Session, *, organization_id: int, event: StripeEvent) -> Outcome:
    """The invoice was voided or written off, the subscription or customer deleted, the payment
    intent canceled: nothing is owed, so the open attempts about it stop, with the reason."""
    refs = refs_of(event)
    if refs.attempt_id is not None:
        # Our own Checkout's payment intent, canceled when its session expired: not the debt.
        return Outcome.own_checkout_event
    reason = DEBT_ENDED_EVENTS[event.type]
    transactions = _transactions_of_debt(
        session, organization_id=organization_id, event=event, refs=refs
    )
    if not transactions:
        return Outcome.no_matching_attempt
    stopped = 0
    for transaction in transactions:
        attempt = attempts_repository.get_open_for_transaction(
            session, transaction_id=transaction.id
        )
        if attempt is not None and recovery.stop_attempt(session, attempt=attempt, reason=reason):
            stopped += 1
            service.close_checkout(session, attempt=attempt)
            log.info(
                "attempt_cancelled_by_stripe",
                attempt_id=attempt.id,
                event_id=event.id,
                reason=reason,
            )
    return Outcome.attempt_cancelled if stopped else Outcome.already_final


def _attempt_for_success(
    session: Session, *, organization_id: int, refs: PaymentRefs
) -> RecoveryAttempt | None:
    if refs.attempt_id is not None and refs.organization_id in (None, organization_id):
        found = attempts_repository.get_in_organization(
            session, organization_id=organization_id, attempt_id=refs.attempt_id
        )
        if found is not None:
            return found
    if refs.checkout_session_id:
        found = attempts_repository.get_by_checkout_session(
            session, organization_id=organization_id, checkout_session_id=refs.checkout_session_id
        )
        if found is not None:
            return found
    transaction = repository.find_transaction(
        session, organization_id=organization_id, refs=refs.candidates
    )
    if transaction is None:
        return None
    return attempts_repository.get_open_for_transaction(
        session, transaction_id=transaction.id
    ) or attempts_repository.get_latest_for_transaction(session, transaction_id=transaction.id)


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
    ours = refs.attempt_id is not None or refs.checkout_session_id is not None
    paid_via = (
        recovery.PaidVia.checkout(
            refs.payment_intent_id or refs.checkout_session_id or refs.object_id
        )
        if ours
        else recovery.PaidVia.DEBT
    )
    result = recovery.record_payment(session, attempt=attempt, paid_via=paid_via)
    if refs.checkout_session_id and refs.checkout_session_id == attempt.checkout_session_id:
        service.mark_checkout_closed(session, attempt=attempt)  # this very session paid
    else:
        service.close_checkout(session, attempt=attempt)
    log.info(
        "stripe_payment_recorded",
        attempt_id=attempt.id,
        event_id=event.id,
        paid_via=paid_via,
        result=result.value,
    )
    return _PAYMENT_OUTCOMES[result]


_PAYMENT_OUTCOMES = {
    recovery.PaymentOutcome.completed: Outcome.attempt_completed,
    recovery.PaymentOutcome.completed_after_end: Outcome.attempt_completed_after_end,
    recovery.PaymentOutcome.second_payment: Outcome.second_payment,
    recovery.PaymentOutcome.already_completed: Outcome.already_final,
}
