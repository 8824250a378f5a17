"""The attempt's story in time order: opening, every message with its status changes, the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
    # opened / message / link_opened / completed / cancelled / expired / handed_over / next
    kind: str
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
    attempt: RecoveryAttempt,
    failure: FailureEvent | None,
    logs: Sequence[NotificationLog],
    *,
    lease: timedelta = timedelta(seconds=300),
) -> list[Event]:
    """Events oldest first; the step in a worker's hands, or the next scheduled one, comes last.

    `lease` is the queue lease (`QUEUE_LEASE_SECONDS`): a step claimed by a queue pass or by
    "Retry now" holds the attempt's `lease_owner` (a `q:` claim token) and `next_retry_at` at
    claim time + lease, so the hand-over time is `next_retry_at - lease`.
    """
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
                    _second_payment_detail(attempt),
                )
            )
    elif attempt.status == AttemptStatus.cancelled and attempt.cancelled_at is not None:
        events.append(Event(attempt.cancelled_at, "cancelled", "Cancelled", attempt.cancel_reason))
    elif attempt.status == AttemptStatus.expired:
        at = attempt.cancelled_at or attempt.expires_at
        events.append(Event(at, "expired", "Pay link expired", "No more reminders are sent"))
    events.sort(key=lambda e: e.at)
    if attempt.is_open and attempt.next_retry_at is not None:
        events.append(_what_comes_next(attempt, attempt.next_retry_at, lease))
    return events


def sent_now_flash(
    retry_number: int,
    attempt: RecoveryAttempt,
    logs: Sequence[NotificationLog],
    *,
    retry_at: str | None = None,
) -> tuple[str, str]:
    """The "Retry now" flash after a step ran in this process: each channel's outcome, in the
    words of the timeline's badges. `logs` are the step's messages; `retry_at` (as displayed)
    when a provider failed for a moment and the step is due again then. Returns (kind, message).
    """
    reminder = f"Reminder {retry_number + 1} of {attempt.max_retries}"
    if not logs:
        return "error", f"{reminder} was not sent: the attempt ended or another worker holds it."
    parts = []
    for log in logs:
        status = shown_status(log)
        if status in WENT_OUT:
            parts.append(f"{log.channel} {status} to {log.recipient}")
        elif status == "outbox":
            parts.append(f"{log.channel} kept in the local outbox (not sent to the customer)")
        elif status == "pending":
            parts.append(f"{log.channel} not sent: {log.error_message or 'no answer yet'}")
        elif log.error_message:
            parts.append(f"{log.channel} {status}: {log.error_message}")
        else:
            parts.append(f"{log.channel} {status}")
    message = f"{reminder}: " + "; ".join(parts) + "."
    if retry_at is not None:
        message += f" It is tried again at {retry_at}."
    ok = any(shown_status(log) in (*WENT_OUT, "outbox") for log in logs)
    return ("ok" if ok else "error"), message


def handed_over_title(retry_number: int, max_retries: int) -> str:
    """The words the timeline and the "Retry now" flash both use for a step a worker holds."""
    return f"Reminder {retry_number + 1} of {max_retries} handed to the worker"


def _what_comes_next(attempt: RecoveryAttempt, due: datetime, lease: timedelta) -> Event:
    now = utc_now()
    reminder = f"Reminder {attempt.retry_count + 1} of {attempt.max_retries}"
    held = attempt.lease_owner is not None and due > now
    if attempt.retry_count < attempt.max_retries and held:
        # Claimed (queue pass or "Retry now") and not recorded yet: in a worker's hands.
        owner = attempt.lease_owner or ""
        if owner.startswith("q:"):
            detail = "queued; it shows as sent once the worker records it"
            title = handed_over_title(attempt.retry_count, attempt.max_retries)
        else:
            detail = "a worker is sending it; its messages show above as they go out"
            title = f"{reminder} being sent"
        return Event(min(now, due - lease), "handed_over", title, detail)
    if attempt.retry_count < attempt.max_retries:
        due_now = due <= now
        title = f"{reminder} queued to go out now" if due_now else f"{reminder} scheduled"
        return Event(due, "next", title, "due now" if due_now else None)
    title = "Closes as unpaid if the customer has not paid by then"
    return Event(due, "next", title, "due now" if due <= now else None)


def _second_payment_detail(attempt: RecoveryAttempt) -> str:
    """What the merchant reads about a second payment: both payments, and what to do."""
    second = attempt.second_payment_ref
    if attempt.test_payment:
        return f"{second}, after a test payment that moved no money: check it with the customer"
    first = attempt.paid_via or "an earlier payment"
    return f"{second}, after {first}: refund one of the two payments"
