"""Queries and claims on the webhook tables. Functions flush; callers commit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache
from typing import NamedTuple

from sqlalchemy import Select, bindparam, delete, select, update
from sqlalchemy.orm import Session

from stealth_recovery.auth.idempotency import IdempotencyKey
from stealth_recovery.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)


class Target(NamedTuple):
    """What the outbox needs of an enabled endpoint: whose it is and which events it wants."""

    id: int
    organization_id: int
    event_types: list[str]  # empty: every event


def enabled_endpoints(session: Session, *, organization_ids: Iterable[int]) -> list[Target]:
    """The enabled endpoints of these organizations, as plain rows (every ingestion and every
    reminder asks, and most organizations have none: no ORM objects to build)."""
    ids = sorted(set(organization_ids))
    if not ids:
        return []
    rows = session.execute(_enabled_endpoints(), {"organization_ids": ids})
    return [Target(*row) for row in rows]


@cache
def _enabled_endpoints() -> Select[int, int, list[str]]:
    return select(
        WebhookEndpoint.id, WebhookEndpoint.organization_id, WebhookEndpoint.event_types
    ).where(
        WebhookEndpoint.organization_id.in_(bindparam("organization_ids", expanding=True)),
        WebhookEndpoint.enabled.is_(True),
    )


def any_enabled_endpoint(session: Session) -> bool:
    stmt = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True)).limit(1)
    return session.execute(stmt).first() is not None


def list_endpoints(session: Session, *, organization_id: int) -> list[WebhookEndpoint]:
    stmt = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.organization_id == organization_id)
        .order_by(WebhookEndpoint.id)
    )
    return list(session.scalars(stmt))


def deliveries_of(
    session: Session, *, endpoint_id: int, limit: int, before_id: int | None = None
) -> list[tuple[WebhookDelivery, WebhookEvent]]:
    stmt = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        stmt = stmt.where(WebhookDelivery.id < before_id)
    return [(d, e) for d, e in session.execute(stmt).tuples()]


def attempts_of(session: Session, *, delivery_ids: list[int]) -> dict[int, list[WebhookAttempt]]:
    result: dict[int, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    if not delivery_ids:
        return result
    stmt = (
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .order_by(WebhookAttempt.id)
    )
    for attempt in session.scalars(stmt):
        result[attempt.delivery_id].append(attempt)
    return result


def claim_due(
    session: Session, *, now: datetime, limit: int, lease: timedelta, owner: str
) -> list[int]:
    """Claim up to `limit` due deliveries of enabled endpoints for `owner`, for one lease.

    Prevents two workers sending one delivery at once: rows another transaction is claiming
    are skipped (`FOR UPDATE SKIP LOCKED`; SQLite has one writer), and a claimed row's
    `next_attempt_at` moves to the end of the lease, so it comes back only if its worker dies
    (or stalls) before recording the try. Recording needs `lease_owner = owner` (fencing).
    """
    enabled = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True))
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.pending,
            WebhookDelivery.next_attempt_at <= now,
            WebhookDelivery.endpoint_id.in_(enabled.scalar_subquery()),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=WebhookDelivery)
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=now + lease, lease_owner=owner)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars())


def record_try(
    session: Session,
    *,
    delivery_id: int,
    owner: str,
    values: dict[str, object],
) -> bool:
    """Write a try's outcome on the delivery if `owner` still holds it (False: fenced off)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.lease_owner == owner,
            WebhookDelivery.status == DeliveryStatus.pending,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def purge_expired_idempotency_keys(session: Session, *, now: datetime) -> int:
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
