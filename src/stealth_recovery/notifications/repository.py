"""Notification log queries used by delivery-status callbacks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stealth_recovery.notifications.models import (
    STATUS_RANK,
    NotificationLog,
    NotificationStatus,
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
