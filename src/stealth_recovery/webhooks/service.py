"""The event outbox and the rules on endpoints. Functions flush; callers commit.

`record_event` is called by the code that makes a change, with the session of that change, so
the event commits with it or not at all (an outbox): no event for a change that rolled back, no
change without its event. Callers build the payload from their own schemas; this package
imports nothing above `auth`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from stealth_recovery.core.errors import InvalidInput, NotFound
from stealth_recovery.core.jobs import run_after_commit
from stealth_recovery.core.security import decrypt_secret, encrypt_secret
from stealth_recovery.core.time import utc_now
from stealth_recovery.webhooks import repository
from stealth_recovery.webhooks.models import (
    DeliveryStatus,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from stealth_recovery.webhooks.signing import new_secret
from stealth_recovery.webhooks.targets import UnsafeTarget, check_url

log = structlog.get_logger(__name__)

EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
MAX_ROTATION_OVERLAP = timedelta(days=7)


class WebhookEndpointNotFound(NotFound):
    type = "webhook_endpoint_not_found"


class DeliveryNotFound(NotFound):
    type = "delivery_not_found"


def new_event_id(now: datetime) -> str:
    """`evt_` + milliseconds since the epoch (hex, so ids sort by time) + 64 random bits."""
    return f"evt_{int(now.timestamp() * 1000):012x}{secrets.token_hex(8)}"


@dataclass(frozen=True)
class NewEvent:
    organization_id: int
    type: str
    # The payload, or a function that builds it: called only when an endpoint wants the
    # event, so that an organization without endpoints pays nothing for its events.
    payload: Mapping[str, Any] | Callable[[], Mapping[str, Any]]

    def built_payload(self) -> dict[str, Any]:
        return dict(self.payload() if callable(self.payload) else self.payload)


def _wants(endpoint: repository.Target, event_type: str) -> bool:
    return not endpoint.event_types or event_type in endpoint.event_types


def record_events(session: Session, events: Sequence[NewEvent]) -> list[WebhookEvent]:
    """Write events and one pending delivery per enabled endpoint that wants each.

    An event no endpoint wants is not stored (endpoints receive what happens after they
    exist). One query finds the endpoints of every organization involved.
    """
    if not events:
        return []
    endpoints = repository.enabled_endpoints(
        session, organization_ids={e.organization_id for e in events}
    )
    if not endpoints:
        return []
    now = utc_now()
    written: list[tuple[WebhookEvent, list[repository.Target]]] = []
    for new in events:
        if new.type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {new.type}")
        targets = [
            e for e in endpoints if e.organization_id == new.organization_id and _wants(e, new.type)
        ]
        if not targets:
            continue
        event = WebhookEvent(
            public_id=new_event_id(now),
            organization_id=new.organization_id,
            type=new.type,
            payload=new.built_payload(),
            created_at=now,
        )
        written.append((event, targets))
    if not written:
        return []
    session.add_all([event for event, _ in written])
    session.flush()
    session.add_all(
        [
            WebhookDelivery(
                event_id=event.id,
                endpoint_id=endpoint.id,
                status=DeliveryStatus.pending,
                next_attempt_at=now,
                created_at=now,
            )
            for event, targets in written
            for endpoint in targets
        ]
    )
    session.flush()
    run_after_commit(session, wake_delivery)
    return [event for event, _ in written]


def any_endpoints(session: Session) -> bool:
    """Whether any organization has an enabled endpoint (bulk callers skip their work if not)."""
    return repository.any_enabled_endpoint(session)


def record_event(
    session: Session, organization_id: int, event_type: str, payload: Mapping[str, Any]
) -> WebhookEvent | None:
    """Write one event in the caller's unit of work (None when no endpoint wants it)."""
    written = record_events(session, [NewEvent(organization_id, event_type, payload)])
    return written[0] if written else None


# The delivery side registers how to start a pass soon (a Celery task, or the embedded loop).
_wakers: list[Callable[[], None]] = []


def on_new_events(waker: Callable[[], None]) -> None:
    if waker not in _wakers:
        _wakers.append(waker)


def off_new_events(waker: Callable[[], None]) -> None:
    if waker in _wakers:
        _wakers.remove(waker)


def wake_delivery() -> None:
    for waker in list(_wakers):
        waker()


# --- endpoints -------------------------------------------------------------------------------


def _checked_url(url: str) -> str:
    try:
        check_url(url)
    except UnsafeTarget as exc:
        raise InvalidInput("url", str(exc)) from exc
    return url


def _checked_types(event_types: Sequence[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput(
            "event_types", f"unknown event type {unknown[0]}; known: {', '.join(EVENT_TYPES)}"
        )
    return sorted({str(t) for t in event_types})


def get_endpoint(session: Session, *, organization_id: int, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.organization_id != organization_id:
        raise WebhookEndpointNotFound("webhook endpoint not found")
    return endpoint


def create_endpoint(
    session: Session,
    *,
    organization_id: int,
    url: str,
    event_types: Sequence[str],
    description: str | None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned in clear this once, stored encrypted)."""
    types = _checked_types(event_types)
    _checked_url(url)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        organization_id=organization_id,
        url=url,
        event_types=types,
        description=description,
        secret=encrypt_secret(secret),
        enabled=True,
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def update_endpoint(
    session: Session,
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    if event_types is not None:
        endpoint.event_types = _checked_types(event_types)
    if url is not None:
        endpoint.url = _checked_url(url)
    if description is not None:
        endpoint.description = description or None
    if enabled is True and not endpoint.enabled:
        # Enabled again by a person: failures start counting afresh.
        endpoint.enabled = True
        endpoint.failing_since = None
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
    elif enabled is False and endpoint.enabled:
        endpoint.enabled = False
        endpoint.disabled_at = utc_now()
        endpoint.disabled_reason = "disabled by the merchant"
    session.flush()
    return endpoint


def delete_endpoint(session: Session, *, endpoint: WebhookEndpoint) -> None:
    session.delete(endpoint)
    session.flush()


def rotate_secret(
    session: Session, *, endpoint: WebhookEndpoint, overlap: timedelta
) -> tuple[WebhookEndpoint, str]:
    """A new secret; the current one keeps signing beside it for `overlap` (0 to 7 days)."""
    if overlap < timedelta(0) or overlap > MAX_ROTATION_OVERLAP:
        raise InvalidInput("overlap_hours", "must be between 0 and 168")
    secret = new_secret()
    now = utc_now()
    if overlap > timedelta(0):
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + overlap
    else:
        endpoint.previous_secret = None
        endpoint.previous_secret_expires_at = None
    endpoint.secret = encrypt_secret(secret)
    session.flush()
    return endpoint, secret


def secrets_in_force(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its overlap."""
    current = [decrypt_secret(endpoint.secret)]
    if (
        endpoint.previous_secret is not None
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    ):
        current.append(decrypt_secret(endpoint.previous_secret))
    return current


def replay_delivery(
    session: Session, *, endpoint: WebhookEndpoint, delivery_id: int
) -> WebhookDelivery:
    """Send a delivery's event to its endpoint again, as a new delivery with the same event id
    (a receiver that already processed it recognises it)."""
    original = session.get(WebhookDelivery, delivery_id)
    if original is None or original.endpoint_id != endpoint.id:
        raise DeliveryNotFound("delivery not found")
    now = utc_now()
    replay = WebhookDelivery(
        event_id=original.event_id,
        endpoint_id=endpoint.id,
        status=DeliveryStatus.pending,
        next_attempt_at=now,
        replay=True,
        created_at=now,
    )
    session.add(replay)
    session.flush()
    run_after_commit(session, wake_delivery)
    return replay
