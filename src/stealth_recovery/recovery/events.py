"""Webhook events about attempts, written in the unit of work of the change they describe.

The payload is the attempt as the API shows it (`AttemptOut`), read after the change, plus what
the event alone knows (the reminder's step and channels, the cancellation's reason).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery import repository
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.recovery.presenters import attempt_out
from stealth_recovery.webhooks.models import EventType
from stealth_recovery.webhooks.service import NewEvent, any_endpoints, record_events


def attempt_payload(
    attempt: RecoveryAttempt, transaction: Transaction, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "object": "attempt",
        "attempt": attempt_out(attempt, transaction).model_dump(mode="json"),
        **(extra or {}),
    }


def record_attempt_event(
    session: Session,
    attempt: RecoveryAttempt,
    event_type: EventType,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """One event about `attempt`, in the caller's unit of work."""

    def payload() -> dict[str, Any]:
        transaction = session.get(Transaction, attempt.transaction_id)
        assert transaction is not None
        return attempt_payload(attempt, transaction, extra)

    record_events(session, [NewEvent(attempt.organization_id, event_type, payload)])


def record_attempts_events(
    session: Session,
    attempt_ids: Iterable[int],
    event_type: EventType,
    extra: Mapping[int, Mapping[str, Any]] | None = None,
) -> None:
    """The same kind of event about many attempts changed by one statement (a queue pass)."""
    ids: Sequence[int] = sorted(set(attempt_ids))
    if not ids or not any_endpoints(session):
        return
    rows = repository.with_transactions(session, attempt_ids=ids)
    record_events(
        session,
        [
            NewEvent(
                attempt.organization_id,
                event_type,
                attempt_payload(attempt, transaction, (extra or {}).get(attempt.id)),
            )
            for attempt, transaction in rows
        ],
    )
