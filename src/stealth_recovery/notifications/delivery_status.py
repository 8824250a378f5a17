"""Delivery-status callbacks: verify the sender, map its status, move the log row forward.

A callback for a message id no log row carries yet is held (`held_delivery_statuses`) and
applied when the engine records that id (`apply_held_statuses`), so a provider answering our
webhook before its API answer reaches the worker loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy.orm import Session

from stealth_recovery.core.errors import Forbidden
from stealth_recovery.core.settings import Settings, reveal
from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications import repository
from stealth_recovery.notifications.error_codes import callback_status, twilio_error, whatsapp_error
from stealth_recovery.notifications.events import record_bounces
from stealth_recovery.notifications.models import NotificationStatus
from stealth_recovery.notifications.signatures import meta_signature_valid, twilio_signature_valid

log = structlog.get_logger(__name__)

FINAL_STATUSES = frozenset(
    {NotificationStatus.delivered, NotificationStatus.failed, NotificationStatus.bounced}
)


# How long a status for an unknown message id waits for its send to be recorded. Recording
# follows the provider's answer within seconds; a worker that died first leaves the id unknown
# for good (the row is resent under a new id), so a day is ample.
HOLD_FOR = timedelta(days=1)


class CallbackResult(StrEnum):
    updated = "updated"  # the log row moved forward
    unchanged = "unchanged"  # known message, but the status was not newer (late or repeated)
    held = "held"  # no log row has this message id yet: kept until the send is recorded
    ignored = "ignored"  # an intermediate status we do not record


@dataclass(frozen=True)
class StatusEvent:
    provider: str
    provider_message_id: str
    status: NotificationStatus | None  # None: an intermediate status (queued, sent, ...)
    occurred_at: datetime | None = None
    error_message: str | None = None


def apply_delivery_status(
    session: Session,
    *,
    provider: str,
    provider_message_id: str,
    status: NotificationStatus | None,
    occurred_at: datetime | None = None,
    error_message: str | None = None,
) -> CallbackResult:
    """Move the matching log row to a delivery outcome, never backwards; a status for an id no
    row carries yet is held for `apply_held_statuses` (call `lock_messages` first on
    PostgreSQL, as `apply_events` does)."""
    if status is None:
        return CallbackResult.ignored
    if status not in FINAL_STATUSES:
        raise ValueError(f"a callback can only report {sorted(FINAL_STATUSES)}, not {status}")
    row = repository.find_by_provider_message(
        session, provider=provider, provider_message_id=provider_message_id
    )
    if row is None:
        now = utc_now()
        repository.prune_held(session, received_before=now - HOLD_FOR)
        repository.hold_status(
            session,
            provider=provider,
            provider_message_id=provider_message_id,
            status=status,
            error_message=error_message,
            occurred_at=occurred_at,
            now=now,
        )
        log.info(
            "delivery_status_held",
            provider=provider,
            provider_message_id=provider_message_id,
            status=status.value,
        )
        return CallbackResult.held
    moved = repository.advance_status(
        session,
        log_id=row.id,
        status=status,
        at=occurred_at or utc_now(),
        error_message=error_message,
    )
    if moved and status == NotificationStatus.bounced:
        record_bounces(session, [row.id])
    log.info(
        "delivery_status",
        provider=provider,
        log_id=row.id,
        attempt_id=row.attempt_id,
        status=status.value,
        moved=moved,
    )
    return CallbackResult.updated if moved else CallbackResult.unchanged


def apply_events(session: Session, *, events: Iterable[StatusEvent]) -> list[CallbackResult]:
    """Apply each event of one callback in order, under the message ids' locks."""
    events = list(events)
    repository.lock_messages(
        session,
        [(e.provider, e.provider_message_id) for e in events if e.status is not None],
    )
    return [
        apply_delivery_status(
            session,
            provider=event.provider,
            provider_message_id=event.provider_message_id,
            status=event.status,
            occurred_at=event.occurred_at,
            error_message=event.error_message,
        )
        for event in events
    ]


def apply_held_statuses(session: Session, *, messages: Iterable[tuple[str, str]]) -> int:
    """Apply the held statuses of just-recorded (provider, message id) pairs; how many moved.

    Called by the engine in the transaction that writes the ids, after writing them. Each
    status moves its row forward only, in the order the callbacks arrived, then is dropped.
    """
    wanted = sorted(set(messages))
    if not wanted:
        return 0
    repository.lock_messages(session, wanted)
    held = repository.held_for_recorded(session, wanted)
    moved = 0
    bounced: list[int] = []
    for status, log_id in held:
        advanced = repository.advance_status(
            session,
            log_id=log_id,
            status=NotificationStatus(status.status),
            at=status.occurred_at or status.received_at,
            error_message=status.error_message,
        )
        moved += advanced
        if advanced and status.status == NotificationStatus.bounced:
            bounced.append(log_id)
        log.info(
            "delivery_status_applied_after_hold",
            provider=status.provider,
            log_id=log_id,
            status=status.status,
        )
    repository.delete_held(session, [status.id for status, _ in held])
    record_bounces(session, bounced)
    return moved


class CallbackNotVerifiable(Forbidden):
    """The provider's secret is not configured, so no callback can be trusted."""

    type = "callback_not_verifiable"


class InvalidCallbackSignature(Forbidden):
    type = "invalid_callback_signature"


class SubscriptionNotVerified(Forbidden):
    """Meta's subscription handshake did not carry our verify token."""

    type = "subscription_not_verified"


# --- Twilio ------------------------------------------------------------------------------------
def verify_twilio(
    *, settings: Settings, url: str, params: Iterable[tuple[str, str]], signature: str | None
) -> None:
    """403 unless X-Twilio-Signature matches the URL and form with TWILIO_AUTH_TOKEN."""
    if not settings.twilio_auth_token:
        raise CallbackNotVerifiable("cannot verify Twilio callbacks: TWILIO_AUTH_TOKEN is not set")
    if not twilio_signature_valid(
        auth_token=settings.twilio_auth_token.get_secret_value(),
        url=url,
        params=params,
        signature=signature,
    ):
        log.warning("twilio_callback_bad_signature")
        raise InvalidCallbackSignature("invalid X-Twilio-Signature")


def twilio_event(form: Mapping[str, str]) -> StatusEvent | None:
    """The status a Twilio message status callback reports (None without a MessageSid)."""
    sid = form.get("MessageSid") or form.get("SmsSid")
    if not sid:
        return None
    reported = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    code = form.get("ErrorCode") or ""
    status: NotificationStatus | None = None
    error: str | None = None
    if reported in {"delivered", "read"}:
        status = NotificationStatus.delivered
    elif reported in {"undelivered", "failed", "canceled"}:
        # The same table as a refusal at send time (error_codes.TWILIO_ERRORS).
        entry = twilio_error(code)
        status = NotificationStatus(callback_status(entry))
        error = f"Twilio {reported}" + (f": error {code}" if code else "")
        error += f" ({entry.meaning})" if entry else ""
    return StatusEvent(
        provider="twilio", provider_message_id=sid, status=status, error_message=error
    )


# --- WhatsApp ----------------------------------------------------------------------------------
def verify_whatsapp(*, settings: Settings, body: bytes, signature: str | None) -> None:
    """403 unless X-Hub-Signature-256 is the HMAC-SHA256 of the body with WHATSAPP_APP_SECRET."""
    if not settings.whatsapp_app_secret:
        raise CallbackNotVerifiable(
            "cannot verify WhatsApp webhooks: WHATSAPP_APP_SECRET is not set"
        )
    if not meta_signature_valid(
        app_secret=settings.whatsapp_app_secret.get_secret_value(), body=body, signature=signature
    ):
        log.warning("whatsapp_webhook_bad_signature")
        raise InvalidCallbackSignature("invalid X-Hub-Signature-256")


def whatsapp_challenge(
    *, settings: Settings, mode: str | None, verify_token: str | None, challenge: str | None
) -> str:
    """The challenge to echo when Meta verifies the webhook subscription; 403 otherwise."""
    expected = reveal(settings.whatsapp_verify_token)
    if mode != "subscribe" or not expected or verify_token != expected or challenge is None:
        raise SubscriptionNotVerified("webhook verification failed")
    return challenge


def whatsapp_events(payload: Mapping[str, Any]) -> list[StatusEvent]:
    """Every message status in a WhatsApp Business Account webhook payload."""
    events: list[StatusEvent] = []
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            for item in _dicts(value.get("statuses")):
                message_id = item.get("id")
                if isinstance(message_id, str) and message_id:
                    events.append(_whatsapp_event(message_id, item))
    return events


def _whatsapp_event(message_id: str, item: Mapping[str, Any]) -> StatusEvent:
    reported = str(item.get("status") or "").lower()
    status: NotificationStatus | None = None
    error: str | None = None
    if reported in {"delivered", "read"}:
        status = NotificationStatus.delivered
    elif reported == "failed":
        errors = list(_dicts(item.get("errors")))
        first = errors[0] if errors else {}
        code = first.get("code")
        # The same table as a refusal at send time (error_codes.WHATSAPP_ERRORS).
        status = NotificationStatus(callback_status(whatsapp_error(code)))
        title = first.get("title") or first.get("message") or "failed"
        data = first.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        error = f"WhatsApp error {code}: {title}" if code is not None else f"WhatsApp {title}"
        error += f" ({details})" if details else ""
    return StatusEvent(
        provider="whatsapp",
        provider_message_id=message_id,
        status=status,
        occurred_at=_epoch(item.get("timestamp")),
        error_message=error,
    )


def _dicts(value: Any) -> Iterable[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _epoch(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
