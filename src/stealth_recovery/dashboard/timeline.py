"""The attempt's story in time order: opening, every message with its status changes, the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.payments.models import FailureEvent
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt

_PROVIDER_LABELS = {
    "smtp": "SMTP",
    "twilio": "Twilio",
    "whatsapp": "WhatsApp Cloud API",
    "outbox": "the local outbox (kept, not sent to the customer)",
}


@dataclass(frozen=True)
class Change:
    """One status change of one message."""

    status: str
    at: datetime
    note: str | None = None


@dataclass
class Event:
    at: datetime
    kind: str  # opened / message / link_opened / completed / cancelled / expired / next
    title: str
    detail: str | None = None
    status: str | None = None
    changes: list[Change] = field(default_factory=list)


def message_changes(log: NotificationLog) -> list[Change]:
    """Every status the message went through, from the timestamps the log keeps."""
    provider = _PROVIDER_LABELS.get(log.provider, log.provider)
    changes = [Change("pending", log.created_at, f"queued for {provider}")]
    if log.sent_at is not None:
        note = f"accepted by {provider}"
        if log.provider_message_id:
            note += f" · id {log.provider_message_id}"
        changes.append(Change("outbox" if log.provider == "outbox" else "sent", log.sent_at, note))
    if log.delivered_at is not None:
        changes.append(Change("delivered", log.delivered_at, "delivery confirmed"))
    if log.failed_at is not None:
        status = log.status if log.status in ("failed", "bounced", "cancelled") else "failed"
        changes.append(Change(status, log.failed_at, log.error_message))
    elif log.status in ("failed", "bounced", "cancelled"):
        changes.append(Change(log.status, log.updated_at, log.error_message))
    if log.status == "handing_over":
        changes.append(Change("handing_over", log.updated_at, f"being handed to {provider}"))
    elif log.status == "unconfirmed":
        # Handed over without an answer: it may have reached the customer; never resent.
        changes.append(Change("unconfirmed", log.updated_at, log.error_message))
    return sorted(changes, key=lambda c: c.at)


WENT_OUT = ("sent", "delivered")


def reminders_out(logs: Sequence[NotificationLog]) -> int:
    """How many reminders reached a provider on at least one channel.

    Failed messages do not count, nor messages the local outbox kept: they reached no customer.
    """
    return len(
        {log.retry_number for log in logs if log.status in WENT_OUT and log.provider != "outbox"}
    )


def reminders_kept(logs: Sequence[NotificationLog]) -> int:
    """How many reminders the local outbox kept on at least one channel (never sent)."""
    return len({log.retry_number for log in logs if log.provider == "outbox"})


def shown_status(log: NotificationLog) -> str:
    """The message's status as the dashboard shows it: `outbox` for a message kept, not sent."""
    if log.provider == "outbox" and log.status == "sent":
        return "outbox"
    return log.status


def build_timeline(
    attempt: RecoveryAttempt, failure: FailureEvent | None, logs: Sequence[NotificationLog]
) -> list[Event]:
    """Events oldest first; the next scheduled reminder, if any, comes last."""
    opened_detail = "Pay link created"
    if failure is not None:
        reason = failure.reason or failure.decline_code or "payment failed"
        opened_detail = f"{failure.gateway}: {reason}"
    events = [Event(attempt.created_at, "opened", "Attempt opened", opened_detail)]
    for log in logs:
        events.append(
            Event(
                at=log.created_at,
                kind="message",
                title=f"Reminder {log.retry_number + 1} by {log.channel}",
                detail=log.recipient,
                status=shown_status(log),
                changes=message_changes(log),
            )
        )
    if attempt.opened_at is not None:
        events.append(Event(attempt.opened_at, "link_opened", "Customer opened the pay link"))
    if attempt.status == AttemptStatus.completed and attempt.completed_at is not None:
        steps = attempt.completed_after_step or 0
        after = "before any reminder" if steps == 0 else f"after {steps} reminder(s)"
        if attempt.paid_after_end:
            after += ", after the reminders had ended"
            if attempt.cancelled_at is not None:
                events.append(
                    Event(attempt.cancelled_at, "cancelled", "Cancelled", attempt.cancel_reason)
                )
        events.append(Event(attempt.completed_at, "completed", "Paid", f"Recovered {after}"))
        if attempt.second_payment_at is not None:
            events.append(
                Event(
                    attempt.second_payment_at,
                    "second_payment",
                    "Paid a second time",
                    f"{attempt.second_payment_ref}: refund one of the two payments",
                )
            )
    elif attempt.status == AttemptStatus.cancelled and attempt.cancelled_at is not None:
        events.append(Event(attempt.cancelled_at, "cancelled", "Cancelled", attempt.cancel_reason))
    elif attempt.status == AttemptStatus.expired:
        at = attempt.cancelled_at or attempt.expires_at
        events.append(Event(at, "expired", "Pay link expired", "No more reminders are sent"))
    events.sort(key=lambda e: e.at)
    if attempt.is_open and attempt.next_retry_at is not None:
        due = attempt.next_retry_at
        due_now = due <= utc_now()
        if attempt.retry_count < attempt.max_retries:
            reminder = f"Reminder {attempt.retry_count + 1} of {attempt.max_retries}"
            title = f"{reminder} queued to go out now" if due_now else f"{reminder} scheduled"
        else:
            title = "Closes as unpaid if the customer has not paid by then"
        detail = "due now" if due_now else None
        events.append(Event(due, "next", title, detail))
    return events
