"""Read side of the attempt API and the pay page: filtered listing, cursors, presentation."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from babel import Locale
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.core.money import format_minor
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.notifications.rendering import format_expiry
from stealth_recovery.organizations.models import Organization
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery.errors import PayLinkNotFound
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.recovery.presenters import attempt_out, pay_url
from stealth_recovery.recovery.schemas import AttemptOut, RecoveryView
from stealth_recovery.recovery.service import attempt_for_customer, get_attempt

_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


def attempt_by_token(session: Session, token: str) -> RecoveryAttempt:
    """The attempt behind a pay link: 404 unknown, 410 expired or final."""
    # Anything that cannot be a token we issued is unknown without asking the database.
    if not _TOKEN.fullmatch(token):
        raise PayLinkNotFound("this payment link does not exist")
    return attempt_for_customer(session, token)


@dataclass(frozen=True)
class AttemptFilters:
    statuses: Sequence[str] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    transaction_ref: str | None = None
    customer_email: str | None = None


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


def list_attempts(
    session: Session,
    *,
    organization_id: int,
    filters: AttemptFilters,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[tuple[RecoveryAttempt, Transaction]]:
    """One page of the organization's attempts, newest first, keyed on (created_at, id)."""
    stmt = (
        select(RecoveryAttempt, Transaction)
        .join(Transaction, Transaction.id == RecoveryAttempt.transaction_id)
        .where(RecoveryAttempt.organization_id == organization_id)
    )
    if filters.statuses:
        stmt = stmt.where(RecoveryAttempt.status.in_(list(filters.statuses)))
    if filters.created_from is not None:
        stmt = stmt.where(RecoveryAttempt.created_at >= filters.created_from)
    if filters.created_to is not None:
        stmt = stmt.where(RecoveryAttempt.created_at < filters.created_to)
    if filters.transaction_ref is not None:
        stmt = stmt.where(Transaction.external_ref == filters.transaction_ref)
    if filters.customer_email is not None:
        # Local parts are stored as the customer wrote them; people search without caring.
        stmt = stmt.where(func.lower(Transaction.customer_email) == filters.customer_email.lower())
    if after is not None:
        at, last_id = after
        # Row-value comparison spelled out: SQLite and PostgreSQL both use the index prefix.
        stmt = stmt.where(
            or_(
                RecoveryAttempt.created_at < at,
                and_(RecoveryAttempt.created_at == at, RecoveryAttempt.id < last_id),
            )
        )
    stmt = stmt.order_by(RecoveryAttempt.created_at.desc(), RecoveryAttempt.id.desc()).limit(limit)
    return [(attempt, transaction) for attempt, transaction in session.execute(stmt).tuples()]


def notifications_of(
    session: Session, *, organization_id: int, attempt_id: int
) -> list[NotificationLog]:
    """The attempt's message log, newest first (404 for another organization's attempt)."""
    get_attempt(session, organization_id=organization_id, attempt_id=attempt_id)
    stmt = (
        select(NotificationLog)
        .where(
            NotificationLog.attempt_id == attempt_id,
            NotificationLog.organization_id == organization_id,
        )
        .order_by(NotificationLog.created_at.desc(), NotificationLog.id.desc())
    )
    return list(session.scalars(stmt))


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
