"""What the attempt API, its webhook events and the pay page show: cursors, response bodies,
the pay page's view. The queries behind them are `recovery.repository`'s."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from babel import Locale
from sqlalchemy.orm import Session

from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.core.money import format_minor
from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.models import Channel
from stealth_recovery.notifications.rendering import format_expiry
from stealth_recovery.organizations.models import Organization
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.recovery.schemas import AttemptOut, NextReminder, RecoveryView, TransactionOut


def pay_url(attempt: RecoveryAttempt) -> str:
    return pay_url_for(attempt.token)


def pay_url_for(token: str) -> str:
    """The customer's pay page for an attempt's token (`BASE_URL/pay/{token}`)."""
    return get_settings().external_url(f"/pay/{token}")


def _reachable(channels: Sequence[str], transaction: Transaction) -> list[str]:
    contact = {
        Channel.email: transaction.customer_email,
        Channel.sms: transaction.customer_phone,
        Channel.whatsapp: transaction.customer_phone,
    }
    return [channel for channel in channels if contact.get(Channel(channel))]


def transaction_out(transaction: Transaction) -> TransactionOut:
    return TransactionOut(
        id=transaction.id,
        transaction_ref=transaction.external_ref,
        amount_minor=transaction.amount_minor,
        currency=transaction.currency,
        customer_email=transaction.customer_email,
        customer_phone=transaction.customer_phone,
        customer_name=transaction.customer_name,
        customer_locale=transaction.customer_locale,
        customer_timezone=transaction.customer_timezone,
        psp_customer_id=transaction.psp_customer_id,
        psp_payment_id=transaction.psp_payment_id,
        created_at=transaction.created_at,
    )


def attempt_out(attempt: RecoveryAttempt, transaction: Transaction) -> AttemptOut:
    next_reminder = None
    if attempt.is_open and attempt.next_retry_at is not None:
        next_reminder = NextReminder(
            due_at=attempt.next_retry_at,
            retry_number=attempt.retry_count,
            channels=_reachable(attempt.enabled_channels, transaction),
        )
    return AttemptOut(
        id=attempt.id,
        status=attempt.status,
        pay_url=pay_url(attempt),
        expires_at=attempt.expires_at,
        opened_at=attempt.opened_at,
        completed_at=attempt.completed_at,
        test_payment=attempt.test_payment,
        cancelled_at=attempt.cancelled_at,
        cancel_reason=attempt.cancel_reason,
        paid_via=attempt.paid_via,
        paid_after_end=attempt.paid_after_end,
        second_payment_at=attempt.second_payment_at,
        second_payment_ref=attempt.second_payment_ref,
        retry_count=attempt.retry_count,
        max_retries=attempt.max_retries,
        last_retry_at=attempt.last_retry_at,
        next_retry_at=attempt.next_retry_at,
        decline_code=attempt.decline_code,
        decline_category=attempt.decline_category,
        policy_id=attempt.policy_id,
        initial_delay_minutes=attempt.initial_delay_minutes,
        backoff_multiplier=attempt.backoff_multiplier,
        max_delay_minutes=attempt.max_delay_minutes,
        enabled_channels=list(attempt.enabled_channels),
        created_at=attempt.created_at,
        updated_at=attempt.updated_at,
        transaction=transaction_out(transaction),
        next_reminder=next_reminder,
    )


def encode_cursor(attempt: RecoveryAttempt) -> str:
    raw = json.dumps([attempt.created_at.isoformat(), attempt.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a page ends at; 422 on anything this API did not hand out."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, attempt_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        # Both halves are compared with columns: the id must fit `integer` (bool is an int to
        # Python), the time must be UTC-representable.
        at = datetime.fromisoformat(created)
        if at.tzinfo is None or type(attempt_id) is not int or not 0 <= attempt_id <= 2**31 - 1:
            raise ValueError("malformed")
        return at.astimezone(UTC), attempt_id
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error, UnicodeError):
        raise InvalidInput("cursor", "is not a cursor returned by this endpoint") from None


def attempt_with_transaction(session: Session, attempt: RecoveryAttempt) -> AttemptOut:
    transaction = session.get(Transaction, attempt.transaction_id)
    assert transaction is not None
    return attempt_out(attempt, transaction)


def _locale_of(transaction: Transaction) -> Locale:
    try:
        return Locale.parse(transaction.customer_locale)
    except (ValueError, TypeError):
        return Locale.parse("en")


def what_happened(category: str, amount: str, merchant: str) -> str:
    if category == DeclineCategory.customer_action:
        return (
            f"Your payment of {amount} to {merchant} was declined because the card needs "
            "attention — for example it has expired or a detail was entered wrongly. "
            "You can pay now with an updated or a different card."
        )
    return (
        f"Your payment of {amount} to {merchant} did not go through. "
        "You can complete it now in a few seconds."
    )


@dataclass(frozen=True)
class PayPage:
    """Everything the pay page and its JSON twin show."""

    view: RecoveryView
    expires_display: str


def pay_page(session: Session, attempt: RecoveryAttempt) -> PayPage:
    transaction = session.get(Transaction, attempt.transaction_id)
    organization = session.get(Organization, attempt.organization_id)
    assert transaction is not None and organization is not None
    locale = _locale_of(transaction)
    amount = format_minor(transaction.amount_minor, transaction.currency, locale)
    view = RecoveryView(
        merchant_name=organization.name,
        amount_minor=transaction.amount_minor,
        currency=transaction.currency,
        amount_display=amount,
        locale=str(locale),
        customer_name=transaction.customer_name,
        status=attempt.status,
        decline_category=attempt.decline_category,
        what_happened=what_happened(attempt.decline_category, amount, organization.name),
        expires_at=attempt.expires_at,
        pay_action=pay_url(attempt) + "/pay",
    )
    return PayPage(
        view=view,
        expires_display=format_expiry(attempt.expires_at, transaction.customer_timezone, locale),
    )
