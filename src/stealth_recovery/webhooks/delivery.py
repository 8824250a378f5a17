"""Delivery: claim due deliveries, POST each signed event, record the try, retry on a schedule.

At least once, with a stable id: a try that is not recorded (the worker died, the database
went away) comes back after the lease with the same `webhook-id`, so a receiver that
de-duplicates on it acts once. 2xx is success; anything else (another status, a timeout, a
refused connection, a target that now resolves to a private address) is retried after
`RETRY_DELAYS[n]` until `MAX_TRIES`; an endpoint failing for `WEBHOOK_DISABLE_AFTER_HOURS`
is disabled with the reason shown to the merchant.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.webhooks import repository
from stealth_recovery.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from stealth_recovery.webhooks.service import secrets_in_force
from stealth_recovery.webhooks.signing import signature_header
from stealth_recovery.webhooks.targets import UnsafeTarget, resolve_target

log = structlog.get_logger(__name__)

# The wait after try n (1-based) failed: 1 min × 4^(n-1), at most 24 h. Nine tries over about
# 70 hours: at once, +1 min, +4 min, +16 min, +64 min, +4 h 16, +17 h 04, +24 h, +24 h.
RETRY_DELAYS: tuple[timedelta, ...] = tuple(
    min(timedelta(minutes=4**n), timedelta(hours=24)) for n in range(8)
)
MAX_TRIES = len(RETRY_DELAYS) + 1
EXCERPT_CHARS = 1024
BATCH = 100
USER_AGENT = "StealthRecovery-Webhooks/1"


def event_body(event: WebhookEvent) -> str:
    """The JSON every endpoint receives for an event; the same bytes on every try."""
    return json.dumps(
        {
            "id": event.public_id,
            "type": event.type,
            "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
            "data": event.payload,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


@dataclass(frozen=True)
class Plan:
    delivery_id: int
    endpoint_id: int
    url: str
    event_id: str
    body: str
    secrets: list[str]
    tries: int  # tries recorded before this one


@dataclass(frozen=True)
class TryResult:
    succeeded: bool
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None


def _load_plans(session: Session, ids: list[int], now: datetime) -> list[Plan]:
    rows = session.execute(
        select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)
    ).tuples()
    return [
        Plan(
            delivery_id=delivery.id,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            event_id=event.public_id,
            body=event_body(event),
            secrets=secrets_in_force(endpoint, now=now),
            tries=delivery.attempts,
        )
        for delivery, event, endpoint in rows
    ]


def send(plan: Plan, *, client: httpx.Client) -> TryResult:
    """POST the event to the endpoint's address as resolved now; never raises."""
    settings = get_settings()
    started = time.perf_counter()

    def failed(error: str, status: int | None = None, excerpt: str | None = None) -> TryResult:
        latency = int((time.perf_counter() - started) * 1000)
        return TryResult(False, status, latency, excerpt, error[:500])

    try:
        target = resolve_target(plan.url)
    except UnsafeTarget as exc:
        return failed(f"refused: url {exc}")
    at = utc_now()
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": plan.event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature_header(
            plan.secrets, msg_id=plan.event_id, at=at, body=plan.body
        ),
    }
    extensions = {"sni_hostname": target.host} if target.url.startswith("https") else {}
    deadline = started + settings.webhook_timeout_seconds
    limit = settings.webhook_max_response_bytes
    try:
        with client.stream(
            "POST", target.url, content=plan.body.encode(), headers=headers, extensions=extensions
        ) as response:
            received = bytearray()
            for chunk in response.iter_raw():
                received += chunk
                if len(received) >= limit:
                    break  # the rest is not read
                if time.perf_counter() > deadline:
                    return failed("timed out reading the answer", response.status_code)
    except httpx.TimeoutException:
        return failed(f"timed out after {settings.webhook_timeout_seconds:g} s")
    except httpx.HTTPError as exc:
        return failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    latency = int((time.perf_counter() - started) * 1000)
    excerpt = bytes(received[:EXCERPT_CHARS]).decode("utf-8", "replace") or None
    if 200 <= response.status_code < 300:
        return TryResult(True, response.status_code, latency, excerpt, None)
    return TryResult(False, response.status_code, latency, excerpt, f"HTTP {response.status_code}")


def _endpoint_health(
    session: Session, *, endpoint_id: int, result: TryResult, now: datetime
) -> None:
    endpoints = WebhookEndpoint
    if result.succeeded:
        session.execute(
            update(endpoints)
            .where(endpoints.id == endpoint_id, endpoints.failing_since.is_not(None))
            .values(failing_since=None)
        )
        return
    session.execute(
        update(endpoints)
        .where(endpoints.id == endpoint_id, endpoints.failing_since.is_(None))
        .values(failing_since=now)
    )
    disable_after = timedelta(hours=get_settings().webhook_disable_after_hours)
    disabled = session.execute(
        update(endpoints)
        .where(
            endpoints.id == endpoint_id,
            endpoints.enabled.is_(True),
            endpoints.failing_since <= now - disable_after,
        )
        .values(
            enabled=False,
            disabled_at=now,
            disabled_reason=(
                f"disabled automatically on {now:%Y-%m-%d %H:%M} UTC: every delivery failed "
                f"for {get_settings().webhook_disable_after_hours:g} hours "
                f"(last error: {result.error})"
            )[:500],
        )
        .returning(endpoints.id)
    ).first()
    if disabled is not None:
        log.warning("webhook_endpoint_disabled", endpoint_id=endpoint_id, error=result.error)


def record(plan: Plan, result: TryResult, *, owner: str) -> bool:
    """Write the try and the delivery's next state (False when another worker holds it now)."""
    now = utc_now()
    tries = plan.tries + 1
    values: dict[str, object] = {"attempts": tries, "last_attempt_at": now, "lease_owner": None}
    if result.succeeded:
        values.update(status=DeliveryStatus.succeeded, delivered_at=now, next_attempt_at=None)
    elif tries >= MAX_TRIES:
        values.update(status=DeliveryStatus.failed, next_attempt_at=None)
    else:
        values.update(next_attempt_at=now + RETRY_DELAYS[tries - 1])
    with session_scope() as session:
        if not repository.record_try(
            session, delivery_id=plan.delivery_id, owner=owner, values=values
        ):
            return False
        session.add(
            WebhookAttempt(
                delivery_id=plan.delivery_id,
                attempted_at=now,
                succeeded=result.succeeded,
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                response_excerpt=result.excerpt,
                error=result.error,
            )
        )
        _endpoint_health(session, endpoint_id=plan.endpoint_id, result=result, now=now)
    if not result.succeeded:
        log.info(
            "webhook_delivery_failed",
            delivery_id=plan.delivery_id,
            endpoint_id=plan.endpoint_id,
            tries=tries,
            error=result.error,
        )
    return True


def deliver_due(*, max_batches: int = 10) -> int:
    """Claim due deliveries batch by batch, send them (several at once) and record each try.

    The Celery task `webhooks.deliver_due` and the embedded loop both run this. Returns the
    number of tries made.
    """
    settings = get_settings()
    lease = timedelta(seconds=settings.webhook_lease_seconds)
    owner = f"d:{uuid.uuid4().hex}"
    total = 0
    with session_scope() as session:
        repository.purge_expired_idempotency_keys(session, now=utc_now())
    timeout = httpx.Timeout(settings.webhook_timeout_seconds)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(max_batches):
            now = utc_now()
            with session_scope() as session:
                ids = repository.claim_due(session, now=now, limit=BATCH, lease=lease, owner=owner)
            if not ids:
                break
            with session_scope(write=False) as session:
                plans = _load_plans(session, ids, now)
            if not plans:
                break
            with ThreadPoolExecutor(max_workers=min(16, len(plans))) as pool:
                results = list(pool.map(lambda p: send(p, client=client), plans))
            for plan, result in zip(plans, results, strict=True):
                record(plan, result, owner=owner)
            total += len(plans)
            if len(ids) < BATCH:
                break
    return total
