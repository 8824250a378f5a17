"""Stripe connection rows, the webhook idempotency record, and the lookups events need."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stealth_recovery.integrations.models import StripeConnection
from stealth_recovery.payments.models import PspEvent, Transaction

PROVIDER = "stripe"


def get_connection(session: Session, *, organization_id: int) -> StripeConnection | None:
    return session.scalar(
        select(StripeConnection).where(StripeConnection.organization_id == organization_id)
    )


def all_connections(session: Session) -> list[StripeConnection]:
    return list(session.scalars(select(StripeConnection).order_by(StripeConnection.id)))


def has_connection(session: Session, *, organization_id: int) -> bool:
    stmt = select(StripeConnection.id).where(StripeConnection.organization_id == organization_id)
    return session.scalar(stmt) is not None


def record_event(
    session: Session,
    *,
    organization_id: int,
    event_id: str,
    event_type: str,
    payload: dict[str, Any],
) -> PspEvent | None:
    """Insert the event's idempotency row; None when the event was already recorded.

    Prevents two deliveries of one event (Stripe's retries, or a replay) from both acting: the
    unique key (organization, provider, event_id) lets one insert through per organization (one
    Stripe account may feed two organizations, and each acts on the event); on PostgreSQL a
    concurrent second insert waits for the first transaction and then fails here. The savepoint
    keeps the caller's transaction usable after the conflict.
    """
    row = PspEvent(
        organization_id=organization_id,
        provider=PROVIDER,
        event_id=event_id,
        event_type=event_type,
        payload=payload,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None
    return row


def event_recorded(
    session: Session,
    *,
    organization_id: int,
    object_ids: Sequence[str],
    event_types: Sequence[str],
    since: datetime,
) -> bool:
    """Whether an event of these types about one of these Stripe objects arrived since `since`.

    Stripe does not promise delivery order: a failure delivered after its payment's success, or
    after the invoice was voided, must not open an attempt. Bounded by time (Stripe stops
    retrying after three days) and scoped by the organization's index, so it reads recent
    events only.
    """
    if not object_ids:
        return False
    object_id = PspEvent.payload[("data", "object", "id")].as_string()
    stmt = (
        select(PspEvent.id)
        .where(
            PspEvent.organization_id == organization_id,
            PspEvent.provider == PROVIDER,
            PspEvent.event_type.in_(event_types),
            PspEvent.received_at >= since,
            object_id.in_(object_ids),
        )
        .limit(1)
    )
    return session.scalar(stmt) is not None


def find_transaction(
    session: Session, *, organization_id: int, refs: Sequence[str]
) -> Transaction | None:
    """The organization's transaction known by any of these Stripe ids (in_, pi_, ch_).

    Stripe reports one failed payment as several events about different objects (the invoice,
    its payment intent, the charge); matching on each id keeps them on one transaction.
    """
    if not refs:
        return None
    stmt = (
        select(Transaction)
        .where(
            Transaction.organization_id == organization_id,
            or_(
                Transaction.external_ref.in_(refs),
                Transaction.psp_payment_id.in_(refs),
                Transaction.psp_invoice_id.in_(refs),
            ),
        )
        .order_by(Transaction.id)
        .limit(1)
    )
    return session.scalar(stmt)


def transactions_of_customer(
    session: Session, *, organization_id: int, customer_id: str
) -> Sequence[Transaction]:
    stmt = select(Transaction).where(
        Transaction.organization_id == organization_id,
        Transaction.psp_customer_id == customer_id,
    )
    return session.scalars(stmt).all()


def transactions_of_subscription(
    session: Session, *, organization_id: int, subscription_id: str, refs: Sequence[str]
) -> Sequence[Transaction]:
    """The subscription's payments: by the subscription id remembered on the transaction, or by
    the ids the subscription object names (its latest invoice)."""
    matches = [Transaction.psp_subscription_id == subscription_id]
    if refs:
        matches += [Transaction.external_ref.in_(refs), Transaction.psp_invoice_id.in_(refs)]
    stmt = select(Transaction).where(Transaction.organization_id == organization_id, or_(*matches))
    return session.scalars(stmt).all()


def mark_processed(session: Session, *, event: PspEvent, at: datetime) -> None:
    event.processed_at = at
    session.flush()
