"""An attempt as the API (and its webhook events) show it."""

from __future__ import annotations

from collections.abc import Sequence

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.models import Channel
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.recovery.schemas import AttemptOut, NextReminder, TransactionOut


def pay_url(attempt: RecoveryAttempt) -> str:
    return get_settings().external_url(f"/pay/{attempt.token}")


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
