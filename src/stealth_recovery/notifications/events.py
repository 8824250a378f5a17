"""The `message.bounced` webhook event, written where a message is found bounced: at the send
(a refused recipient) or by the provider's delivery callback."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from stealth_recovery.notifications import repository
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.webhooks.models import EventType
from stealth_recovery.webhooks.service import NewEvent, record_events


def message_payload(row: NotificationLog) -> dict[str, Any]:
    return {
        "object": "message",
        "message": {
            "id": row.id,
            "attempt_id": row.attempt_id,
            "retry_number": row.retry_number,
            "channel": row.channel,
            "recipient": row.recipient,
            "status": row.status,
            "provider": row.provider,
            "provider_message_id": row.provider_message_id,
            "error_message": row.error_message,
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            "failed_at": row.failed_at.isoformat() if row.failed_at else None,
        },
    }


def record_bounces(session: Session, log_ids: Iterable[int]) -> None:
    """One `message.bounced` event per log row now `bounced`, in the caller's unit of work."""
    ids = sorted(set(log_ids))
    if not ids:
        return
    rows = repository.bounced_among(session, log_ids=ids)
    record_events(
        session,
        [
            NewEvent(row.organization_id, EventType.message_bounced, message_payload(row))
            for row in rows
        ],
    )
