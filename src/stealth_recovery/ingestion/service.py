"""Recording a failed payment: the transaction, the failure event once, and its recovery attempt.

Functions flush; callers commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from babel import Locale, UnknownLocaleError
from babel.numbers import list_currencies
from sqlalchemy.orm import Session

from stealth_recovery.core.contacts import customer_zone, normalise_email, normalise_phone
from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.core.time import ensure_utc, utc_now
from stealth_recovery.payments import repository
from stealth_recovery.payments.declines import DeclineCategory, classify_decline
from stealth_recovery.payments.models import FailureEvent, Transaction
from stealth_recovery.recovery import repository as attempts_repository
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt
from stealth_recovery.recovery.service import OpenedAttempt
from stealth_recovery.retry.policy import effective_policy

log = structlog.get_logger(__name__)

_CURRENCIES = frozenset(list_currencies())
_KEY_MAX = FailureEvent.idempotency_key.type.length or 255
_LOCALE_MAX = Transaction.customer_locale.type.length or 16


@dataclass(frozen=True)
class FailureInput:
    """One failed payment as a gateway or the merchant's server reports it."""

    external_ref: str
    amount_minor: int
    currency: str
    customer_email: str | None
    customer_phone: str | None
    customer_name: str | None
    customer_locale: str | None
    customer_timezone: str | None
    gateway: str
    reason: str | None
    decline_code: str | None
    occurred_at: datetime
    # None derives one from gateway, reference and time: the same report twice is one failure.
    idempotency_key: str | None
    psp_customer_id: str | None
    psp_payment_id: str | None
    raw_metadata: dict[str, Any] = field(default_factory=dict)
    # None classifies `decline_code` with the decline table.
    decline_category: DeclineCategory | None = None
    # The provider's invoice and subscription behind the payment (Stripe's in_… and sub_…).
    psp_invoice_id: str | None = None
    psp_subscription_id: str | None = None


class Ingested(StrEnum):
    """What `record_failure` did with one report, so no caller derives it again.

    - opened: a new attempt; its reminders are scheduled.
    - hard_declined: a hard decline ended the chase: the new attempt opened `cancelled`, the
      payment's open attempt stopped now, or the report repeats the decline that stopped it.
    - already_open: a new failure of a payment being recovered; its open attempt goes on.
    - duplicate: the same failure reported again; the attempt it opened goes on.
    - already_paid: the payment's attempt was paid; nothing opened.
    - already_ended: the payment's attempt was cancelled or expired; nothing opened.
    """

    opened = "opened"
    hard_declined = "hard_declined"
    already_open = "already_open"
    duplicate = "duplicate"
    already_paid = "already_paid"
    already_ended = "already_ended"


@dataclass(frozen=True)
class IngestionResult:
    outcome: Ingested
    attempt: RecoveryAttempt
    created: bool  # a new attempt row (opened, or opened cancelled by a hard decline)
    # The attempt's transaction as this call wrote it, when it did (a new failure): the
    # response shows it without reading it again.
    transaction: Transaction | None = None


@dataclass(frozen=True)
class _Decline:
    """The report's decline code and its category."""

    code: str | None
    category: DeclineCategory


def default_idempotency_key(*, gateway: str, external_ref: str, occurred_at: datetime) -> str:
    """`gateway:ref:time`, readable; hashed when a long reference would overflow the column."""
    key = f"{gateway}:{external_ref}:{ensure_utc(occurred_at).isoformat()}"
    if len(key) <= _KEY_MAX:
        return key
    return f"{gateway}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def normalise_currency(value: str) -> str:
    code = value.strip().upper()
    if code not in _CURRENCIES:
        raise ValueError("must be an ISO 4217 currency code such as EUR or USD")
    return code


def normalise_locale(value: str) -> str:
    """A locale Babel knows, in its canonical form (`de-at` → `de_AT`)."""
    try:
        canonical = str(Locale.parse(value.strip().replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError):
        canonical = ""
    if not canonical or len(canonical) > _LOCALE_MAX:
        raise ValueError("must be a known locale such as en, de_DE or pt-BR")
    return canonical


def normalise_timezone(value: str) -> str:
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("must be an IANA time zone such as Europe/Berlin") from None
    return value.strip()


def _checked(field_name: str, normalise: Any, value: str) -> str:
    try:
        result: str = normalise(value)
    except ValueError as exc:
        raise InvalidInput(field_name, str(exc)) from None
    return result


def phone_region(locale: str) -> str | None:
    """The country of a locale (`de_DE` → `DE`), to read national phone numbers in."""
    territory = Locale.parse(locale).territory
    return territory if territory else None


@dataclass(frozen=True)
class _Checked:
    """A failure report's fields after validation, in the form they are stored."""

    external_ref: str
    currency: str
    locale: str
    timezone: str
    email: str | None
    phone: str | None
    occurred_at: datetime
    idempotency_key: str
    decline: _Decline


def _checked_input(data: FailureInput) -> _Checked:
    """Validate and normalise a report; raises InvalidInput naming the field and the rule."""
    external_ref = data.external_ref.strip()
    if not external_ref:
        raise InvalidInput("external_ref", "must not be empty")
    if data.amount_minor <= 0:
        raise InvalidInput("amount_minor", "must be greater than 0")
    currency = _checked("currency", normalise_currency, data.currency)
    locale = _checked("customer_locale", normalise_locale, data.customer_locale or "en")
    email = (
        _checked("customer_email", normalise_email, data.customer_email)
        if data.customer_email
        else None
    )
    phone = (
        _checked(
            "customer_phone",
            lambda v: normalise_phone(v, phone_region(locale)),
            data.customer_phone,
        )
        if data.customer_phone
        else None
    )
    timezone = customer_zone(
        _checked("customer_timezone", normalise_timezone, data.customer_timezone)
        if data.customer_timezone
        else None,
        phone=phone,
        locale=locale,
    )
    try:
        occurred_at = ensure_utc(data.occurred_at)
    except ValueError as exc:
        raise InvalidInput("occurred_at", str(exc)) from None
    return _Checked(
        external_ref=external_ref,
        currency=currency,
        locale=locale,
        timezone=timezone,
        email=email,
        phone=phone,
        occurred_at=occurred_at,
        idempotency_key=data.idempotency_key
        or default_idempotency_key(
            gateway=data.gateway, external_ref=external_ref, occurred_at=occurred_at
        ),
        decline=_Decline(
            code=data.decline_code,
            category=data.decline_category or classify_decline(data.decline_code),
        ),
    )


def record_failure(
    session: Session,
    *,
    organization_id: int,
    data: FailureInput,
    policy_stamp: int | None = None,
) -> IngestionResult:
    """Store the failure and open a recovery attempt, once per failure and per open attempt.

    Returns what it did (`Ingested`) with the attempt concerned. The same idempotency key again
    returns the attempt it opened (`duplicate`); a new failure of a transaction whose attempt is
    still open returns that attempt (`already_open`). A report about an attempt already running
    may say more than the first one: its hard decline stops the attempt, a first decline code
    sets the category the reminders are worded for. Concurrent identical reports settle on the
    unique keys (failure events per organization and key, one open attempt per transaction).
    `policy_stamp`: the organization's `policy_stamp` as the caller's authentication read it
    (`retry.policy.effective_policy`); None reads it. A new failure takes three statements
    here: the transaction's upsert, the failure's insert, the attempt's insert (plus the
    webhook outbox's). Raises InvalidInput naming the field and the rule.
    """
    checked = _checked_input(data)
    key, decline = checked.idempotency_key, checked.decline
    now = utc_now()
    transaction = repository.upsert_transaction(
        session,
        organization_id=organization_id,
        external_ref=checked.external_ref,
        values={
            "amount_minor": data.amount_minor,
            "currency": checked.currency,
            "customer_email": checked.email,
            "customer_phone": checked.phone,
            "customer_name": data.customer_name.strip() if data.customer_name else None,
            "customer_locale": checked.locale,
            "customer_timezone": checked.timezone,
            "psp_customer_id": data.psp_customer_id,
            "psp_payment_id": data.psp_payment_id,
            "psp_invoice_id": data.psp_invoice_id,
            "psp_subscription_id": data.psp_subscription_id,
        },
        unless_failure_key=key,
        now=now,
    )
    failure = (
        repository.insert_failure(
            session,
            values={
                "organization_id": organization_id,
                "transaction_id": transaction.id,
                "idempotency_key": key,
                "gateway": data.gateway,
                "reason": data.reason,
                "decline_code": data.decline_code,
                "raw_metadata": dict(data.raw_metadata),
                "occurred_at": checked.occurred_at,
                "created_at": now,
            },
        )
        if transaction is not None
        else None
    )
    if transaction is None or failure is None:
        # Reported before (or a concurrent report of it committed first): its attempt answers.
        existing = repository.get_failure_by_key(
            session, organization_id=organization_id, idempotency_key=key
        )
        if existing is None:
            raise RuntimeError(f"failure {key!r} neither recorded nor found")
        return _replayed(session, failure=existing, decline=decline)

    opened = recovery_service.open_attempt(
        session,
        transaction=transaction,
        failure=failure,
        policy=effective_policy(session, organization_id=organization_id, stamp=policy_stamp),
        decline_code=data.decline_code,
        decline_category=decline.category,
        unless_hard_declined=[checked.external_ref, data.psp_payment_id, data.psp_invoice_id],
    )
    if opened.hard_declined_before:
        return _after_hard_decline(session, failure=failure, sticky=opened.attempt, decline=decline)
    result = _result_of(session, opened, decline=decline, replay=False)
    if result.attempt.transaction_id == transaction.id:
        result = replace(result, transaction=transaction)
    log.info(
        "failure_recorded",
        organization_id=organization_id,
        transaction_id=transaction.id,
        failure_event_id=failure.id,
        attempt_id=result.attempt.id,
        attempt_created=result.created,
        decline_category=decline.category.value,
        outcome=result.outcome.value,
    )
    return result


def _after_hard_decline(
    session: Session, *, failure: FailureEvent, sticky: RecoveryAttempt, decline: _Decline
) -> IngestionResult:
    """A new failure of a payment that was hard-declined before: never reopen a chase.

    A hard decline sticks to its payment, so the report stops the transaction's open attempt
    (if any) with that decline and otherwise answers with the attempt that ended.
    """
    stopped = recovery_service.open_attempt_of(session, transaction_id=failure.transaction_id)
    if stopped is not None and recovery_service.apply_later_decline(
        session, attempt=stopped, code=sticky.decline_code, category=DeclineCategory.hard
    ):
        result = IngestionResult(Ingested.hard_declined, stopped, created=False)
    else:
        attempt = stopped or sticky
        result = IngestionResult(_ended(attempt, decline), attempt, created=False)
    log.info(
        "failure_recorded_after_hard_decline",
        organization_id=failure.organization_id,
        transaction_id=failure.transaction_id,
        failure_event_id=failure.id,
        attempt_id=sticky.id,
        outcome=result.outcome.value,
    )
    return result


def _replayed(session: Session, *, failure: FailureEvent, decline: _Decline) -> IngestionResult:
    attempt = attempts_repository.get_for_failure(session, failure=failure)
    if attempt is None:
        # The failure row exists without any attempt only if its transaction lost them all
        # (deleted by hand); open one now rather than answer with nothing.
        transaction = session.get(Transaction, failure.transaction_id)
        assert transaction is not None
        opened = recovery_service.open_attempt(
            session,
            transaction=transaction,
            failure=failure,
            policy=effective_policy(session, organization_id=failure.organization_id),
            decline_code=failure.decline_code,
            decline_category=classify_decline(failure.decline_code),
        )
    else:
        opened = OpenedAttempt(attempt, created=False)
    return _result_of(session, opened, decline=decline, replay=True)


def _result_of(
    session: Session, opened: OpenedAttempt, *, decline: _Decline, replay: bool
) -> IngestionResult:
    attempt = opened.attempt
    if opened.created:
        hard = attempt.status == AttemptStatus.cancelled  # only a hard decline opens it so
        return IngestionResult(
            Ingested.hard_declined if hard else Ingested.opened, attempt, created=True
        )
    # A later report about a payment already being recovered may say more than the first (an
    # invoice event carries no decline code; its payment intent's does).
    if recovery_service.apply_later_decline(
        session, attempt=attempt, code=decline.code, category=decline.category
    ):
        return IngestionResult(Ingested.hard_declined, attempt, created=False)
    if attempt.is_open:
        outcome = Ingested.duplicate if replay else Ingested.already_open
        return IngestionResult(outcome, attempt, created=False)
    return IngestionResult(_ended(attempt, decline), attempt, created=False)


def _ended(attempt: RecoveryAttempt, decline: _Decline) -> Ingested:
    """What a report about a payment whose attempt is final amounts to."""
    if (
        decline.category == DeclineCategory.hard
        and attempt.status == AttemptStatus.cancelled
        and attempt.decline_category == DeclineCategory.hard
        and attempt.decline_code == decline.code
    ):
        return Ingested.hard_declined  # the report repeats the decline that stopped it
    if attempt.status == AttemptStatus.completed:
        return Ingested.already_paid
    return Ingested.already_ended
