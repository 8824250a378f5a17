"""Decline codes decide the recovery path: soft, customer action, or hard (no reminders)."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class DeclineCategory(StrEnum):
    """How a decline is handled: retry on schedule, ask the customer to act, or stop."""

    soft = "soft"
    customer_action = "customer_action"
    hard = "hard"


_SOFT = (
    # Temporary: the same card may well succeed later, so the normal schedule applies.
    "insufficient_funds",
    "processing_error",
    "try_again_later",
    "generic_decline",
    "do_not_honor",
    "issuer_not_available",
    "reenter_transaction",
    "approve_with_id",
    "call_issuer",
    "card_velocity_exceeded",
    "withdrawal_count_limit_exceeded",
    "duplicate_transaction",
    "no_action_taken",
)
_CUSTOMER_ACTION = (
    # The customer must fix or replace the card before a payment can succeed.
    "expired_card",
    "incorrect_cvc",
    "invalid_cvc",
    "incorrect_number",
    "invalid_number",
    "invalid_expiry_month",
    "invalid_expiry_year",
    "incorrect_zip",
    "incorrect_address",
    "authentication_required",
    "card_not_supported",
    "invalid_account",
    "invalid_amount",
    "offline_pin_required",
    "online_or_offline_pin_required",
    "incorrect_pin",
    "invalid_pin",
    "pin_try_exceeded",
    "testmode_decline",
    "not_permitted",
    "service_not_allowed",
    "transaction_not_allowed",
    "currency_not_supported",
    "new_account_information_available",
)
_HARD = (
    # Fraud or a blocked card: reminding the customer would be wrong or harmful.
    "stolen_card",
    "lost_card",
    "fraudulent",
    "pickup_card",
    "restricted_card",
    "merchant_blacklist",
    "security_violation",
    "revocation_of_all_authorizations",
    "revocation_of_authorization",
    "stop_payment_order",
)

DECLINE_TABLE: MappingProxyType[str, DeclineCategory] = MappingProxyType(
    {
        **dict.fromkeys(_SOFT, DeclineCategory.soft),
        **dict.fromkeys(_CUSTOMER_ACTION, DeclineCategory.customer_action),
        **dict.fromkeys(_HARD, DeclineCategory.hard),
    }
)


def classify_decline(code: str | None) -> DeclineCategory:
    """The recovery path for a gateway decline code; unknown or missing codes count as soft."""
    if not code:
        return DeclineCategory.soft
    return DECLINE_TABLE.get(code.strip().lower(), DeclineCategory.soft)
