"""Notification log and held-status statements used by delivery-status callbacks."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from stealth_recovery.notifications.models import (
    STATUS_RANK,
    HeldDeliveryStatus,
    NotificationLog,
    NotificationStatus,
)

# Advisory locks (PostgreSQL) that order a callback's hold against the record of the same
# message id: (namespace, bucket), the bucket a hash of (provider, id), so a record of
# thousands of messages takes at most MESSAGE_LOCK_BUCKETS locks.
MESSAGE_LOCK_NAMESPACE = 0x5352_0011
MESSAGE_LOCK_BUCKETS = 64
_LOCK_BUCKETS = text(
    "SELECT pg_advisory_xact_lock(:namespace, b) FROM ("
    "SELECT DISTINCT unnest(CAST(:buckets AS integer[])) AS b ORDER BY b) AS ordered"
)


def find_by_provider_message(
    session: Session, *, provider: str, provider_message_id: str
) -> NotificationLog | None:
    """The log row a provider's message id belongs to (ids are unique per provider)."""
    return session.scalars(
        select(NotificationLog)
        .where(
            NotificationLog.provider == provider,
            NotificationLog.provider_message_id == provider_message_id,
        )
        .limit(1)
    ).first()


def advance_status(
    session: Session,
    *,
    log_id: int,
    status: NotificationStatus,
    at: datetime,
    error_message: str | None = None,
) -> bool:
    """Move a log row to `status` only from a lower-ranked status; True when it moved.

    Race prevented: two callbacks for the same message handled at once (Twilio retrying, or
    `delivered` and `failed` crossing) each read the row and both write. The conditional UPDATE
    lets only a forward move land, so a status is never lowered or overwritten sideways.
    """
    rank = STATUS_RANK[status]
    lower = [s.value for s in NotificationStatus if STATUS_RANK[s] < rank]
    values: dict[str, object] = {"status": status.value, "updated_at": at}
    if status == NotificationStatus.delivered:
        values["delivered_at"] = at
    else:
        values["failed_at"] = at
        values["error_message"] = error_message
    result = session.execute(
        update(NotificationLog)
        .where(NotificationLog.id == log_id, NotificationLog.status.in_(lower))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return bool(getattr(result, "rowcount", 0) == 1)


def lock_messages(session: Session, messages: Iterable[tuple[str, str]]) -> None:
    """Take the transaction's advisory locks for these (provider, message id) pairs.

    Race prevented: a callback for a message id not recorded yet, and the record of that id,
    run at once; each reads before the other commits, so the callback is held and the record
    finds nothing held: the status would wait forever. Both sides take the id's lock before
    reading, and keep it to their commit: whichever comes second sees what the first wrote
    (each statement reads what is committed, under READ COMMITTED). Locks are taken in
    ascending bucket order by every caller, so they never deadlock. SQLite needs none: its
    writers run one at a time (BEGIN IMMEDIATE).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    buckets = sorted(
        {
            zlib.crc32(f"{provider}\0{message_id}".encode()) % MESSAGE_LOCK_BUCKETS
            for provider, message_id in messages
        }
    )
    if buckets:
        session.execute(_LOCK_BUCKETS, {"namespace": MESSAGE_LOCK_NAMESPACE, "buckets": buckets})


def hold_status(
    session: Session,
    *,
    provider: str,
    provider_message_id: str,
    status: NotificationStatus,
    error_message: str | None,
    occurred_at: datetime | None,
    now: datetime,
) -> None:
    """Keep a status for a message id no log row carries yet."""
    session.add(
        HeldDeliveryStatus(
            provider=provider,
            provider_message_id=provider_message_id,
            status=status.value,
            error_message=error_message,
            occurred_at=occurred_at,
            received_at=now,
        )
    )
    session.flush()


def prune_held(session: Session, *, received_before: datetime) -> int:
    """Drop held statuses received before the given time; how many went."""
    result = session.execute(
        delete(HeldDeliveryStatus)
        .where(HeldDeliveryStatus.received_at < received_before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def held_for_recorded(
    session: Session, messages: Sequence[tuple[str, str]]
) -> list[tuple[HeldDeliveryStatus, int]]:
    """Held statuses of these (provider, message id) pairs whose log row now exists, with the
    row's id, oldest first.

    Runs on every record of the engine. The held table only has the few statuses waiting for
    their record (and is pruned after a day), so it is joined whole to the log's (provider, message
    id) index and filtered here: the cost follows the held rows, not the batch size.
    """
    wanted = set(messages)
    rows = session.execute(
        select(HeldDeliveryStatus, NotificationLog.id)
        .join(
            NotificationLog,
            (NotificationLog.provider == HeldDeliveryStatus.provider)
            & (NotificationLog.provider_message_id == HeldDeliveryStatus.provider_message_id),
        )
        .order_by(HeldDeliveryStatus.id)
    ).all()
    return [
        (held, log_id)
        for held, log_id in rows
        if (held.provider, held.provider_message_id) in wanted
    ]


def delete_held(session: Session, ids: Sequence[int]) -> None:
    if ids:
        session.execute(
            delete(HeldDeliveryStatus)
            .where(HeldDeliveryStatus.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
