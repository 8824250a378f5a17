"""The /v1/retry API: policies, statistics, the notification audit trail, retry now."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from stealth_recovery.auth.deps import AdminPrincipal, CurrentPrincipal
from stealth_recovery.auth.idempotency import IdempotentRoute
from stealth_recovery.core.api import DbId, error_responses
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications import repository as logs_repository
from stealth_recovery.recovery.schedule import Schedule, preview_steps
from stealth_recovery.recovery.service import get_attempt
from stealth_recovery.recovery.windows import Place, zone_info
from stealth_recovery.retry import policy as policies
from stealth_recovery.retry import repository
from stealth_recovery.retry import service as retry_service
from stealth_recovery.retry.models import RetryPolicy
from stealth_recovery.retry.schemas import (
    ActivePolicyOut,
    NotificationOut,
    PolicyCreate,
    PolicyOut,
    PolicyPreviewIn,
    PolicyPreviewOut,
    PreviewReminder,
    RetryNowOut,
    RetryStats,
    window_fields,
)
from stealth_recovery.retry.stats import compute_stats

router = APIRouter(prefix="/v1/retry", tags=["retry"], route_class=IdempotentRoute)

PolicyId = Annotated[DbId, Path(description="retry policy id")]
AttemptId = Annotated[DbId, Path(description="recovery attempt id")]


@router.post(
    "/policies",
    status_code=status.HTTP_201_CREATED,
    response_model=PolicyOut,
    responses=error_responses(401, 403, 422),
)
def create_policy(body: PolicyCreate, principal: AdminPrincipal, session: SessionDep) -> PolicyOut:
    """Create a retry policy and make it the active one (admin); the previous one is deactivated.

    Attempts already open keep the schedule they were opened with. With a send window
    (`window_start`, `window_end`, optionally `window_days` and `window_skip_holidays`), a
    reminder due outside it, in the customer's time zone, goes at the window's next opening.
    """
    policy = policies.create_policy(
        session, organization_id=principal.organization_id, **_policy_values(body)
    )
    return PolicyOut.of(policy)


def _policy_values(body: PolicyCreate) -> dict[str, Any]:
    """The service's arguments of a policy body; raises PolicyInvalid naming the field."""
    return {
        "name": body.name,
        "max_retries": body.max_retries,
        "initial_delay_minutes": body.initial_delay_minutes,
        "backoff_multiplier": body.backoff_multiplier,
        "max_delay_minutes": body.max_delay_minutes,
        "enabled_channels": [channel.value for channel in body.enabled_channels],
        "window": policies.validate_window(
            window_start=body.window_start,
            window_end=body.window_end,
            window_days=body.window_days,
            window_skip_holidays=body.window_skip_holidays,
        ),
    }


@router.put(
    "/policies/{policy_id}",
    response_model=PolicyOut,
    responses=error_responses(401, 403, 404, 422, e404="no such policy in the organization"),
)
def update_policy(
    policy_id: PolicyId, body: PolicyCreate, principal: AdminPrincipal, session: SessionDep
) -> PolicyOut:
    """Replace a policy's numbers, channels and send window (admin); it stays active or not.

    Attempts already open keep the schedule they were opened with; attempts opened afterwards
    get the new one.
    """
    policy = policies.update_policy(
        session,
        organization_id=principal.organization_id,
        policy_id=policy_id,
        **_policy_values(body),
    )
    session.refresh(policy)
    return PolicyOut.of(policy)


@router.post(
    "/policies/preview",
    response_model=PolicyPreviewOut,
    responses=error_responses(401, 422),
)
def preview_policy(body: PolicyPreviewIn, principal: CurrentPrincipal) -> PolicyPreviewOut:
    """The reminder times some numbers and window would give a customer (any role); saves
    nothing.

    Each reminder is due the backoff's delay after the previous one went (or after `start`)
    and goes then, or at the send window's next opening in `customer_timezone` (skipping
    `customer_country`'s public holidays with `window_skip_holidays`).
    """
    values = _policy_values(body)
    policies.validate(**{k: v for k, v in values.items() if k != "window"})
    schedule = Schedule(
        max_retries=body.max_retries,
        initial_delay_minutes=body.initial_delay_minutes,
        backoff_multiplier=body.backoff_multiplier,
        max_delay_minutes=body.max_delay_minutes,
        window=values["window"],
    )
    start = body.start.astimezone(UTC) if body.start else utc_now()
    place = Place(zone=body.customer_timezone, country=body.customer_country)
    zone = zone_info(place.zone)
    return PolicyPreviewOut(
        customer_timezone=place.zone,
        customer_country=place.country,
        start=start,
        reminders=[
            PreviewReminder(
                number=n,
                due_at=due,
                send_at=send,
                local_send_at=send.astimezone(zone).isoformat(),
                moved=send != due,
            )
            for n, (due, send) in enumerate(preview_steps(schedule, start, place), start=1)
        ],
    )


@router.get("/policies", response_model=list[PolicyOut], responses=error_responses(401))
def list_policies(principal: CurrentPrincipal, session: SessionDep) -> list[PolicyOut]:
    """Every policy of the organization, the active one first, then newest first."""
    rows = repository.list_for_org(session, organization_id=principal.organization_id)
    return [PolicyOut.of(row) for row in rows]


@router.get(
    "/policies/active",
    response_model=ActivePolicyOut,
    responses=error_responses(401),
)
def active_policy(principal: CurrentPrincipal, session: SessionDep) -> ActivePolicyOut:
    """The policy an attempt opened now would get.

    With no active policy this is the built-in default (3 reminders, 60 min, ×2, cap 1440 min,
    email), returned with `"id": null` and `"is_default": true`.
    """
    effective = policies.effective_policy(session, organization_id=principal.organization_id)
    row = (
        policies.get_policy(
            session, organization_id=principal.organization_id, policy_id=effective.policy_id
        )
        if effective.policy_id is not None
        else None
    )
    return ActivePolicyOut(
        id=effective.policy_id,
        org_id=principal.organization_id,
        name=effective.name,
        max_retries=effective.schedule.max_retries,
        initial_delay_minutes=effective.schedule.initial_delay_minutes,
        backoff_multiplier=effective.schedule.backoff_multiplier,
        max_delay_minutes=effective.schedule.max_delay_minutes,
        enabled_channels=list(effective.enabled_channels),
        **window_fields(effective.schedule.window),
        is_active=True,
        created_at=row.created_at if row else None,
        updated_at=row.updated_at if row else None,
        is_default=effective.is_default,
    )


@router.delete(
    "/policies/{policy_id}",
    response_model=PolicyOut,
    responses=error_responses(401, 403, 404, e404="no such policy in the organization"),
)
def deactivate_policy(
    policy_id: PolicyId, principal: AdminPrincipal, session: SessionDep
) -> PolicyOut:
    """Deactivate a policy (admin). The row is kept; without an active policy the default applies.

    Deactivating an inactive policy changes nothing and answers the same.
    """
    policy: RetryPolicy = policies.deactivate_policy(
        session, organization_id=principal.organization_id, policy_id=policy_id
    )
    session.refresh(policy)
    return PolicyOut.of(policy)


@router.get("/stats", response_model=RetryStats, responses=error_responses(401))
def stats(principal: CurrentPrincipal, session: SessionDep) -> RetryStats:
    """Recovery figures of the caller's organization, aggregated by the database.

    - `total_attempts`: every recovery attempt, in any status.
    - `pending_retries`: open attempts (created, sent, opened) with a next reminder scheduled.
    - `sent_count`: messages (notification log rows) whose status is `sent` or `delivered`,
      outbox messages excepted (`outbox_count`: kept by the local outbox, never sent).
    - `completed_count`: attempts completed (paid).
    - `failed_count`: messages whose status is `failed` or `bounced`.
    - `unconfirmed_count`: messages handed over without an answer (may have arrived; never
      resent).
    - `avg_retry_count`: mean `retry_count` (reminder steps sent) over all attempts, rounded to
      2 decimals; 0 when there are none.
    """
    return compute_stats(session, organization_id=principal.organization_id)


@router.get(
    "/attempts/{attempt_id}/notifications",
    response_model=list[NotificationOut],
    responses=error_responses(401, 404, e404="no such attempt in the organization"),
)
def attempt_notifications(
    attempt_id: AttemptId, principal: CurrentPrincipal, session: SessionDep
) -> list[NotificationOut]:
    """The attempt's notification audit trail: every message on every channel, newest first."""
    # 404 for another organization's attempt.
    get_attempt(session, organization_id=principal.organization_id, attempt_id=attempt_id)
    rows = logs_repository.logs_of_attempt(
        session, organization_id=principal.organization_id, attempt_id=attempt_id
    )
    return [NotificationOut.model_validate(row) for row in rows]


@router.post(
    "/attempts/{attempt_id}/retry-now",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetryNowOut,
    responses=error_responses(
        401,
        403,
        404,
        409,
        503,
        e404="no such attempt in the organization",
        e409="the attempt is final, expired, or all its reminders have been sent",
    ),
)
def retry_now(attempt_id: AttemptId, principal: AdminPrincipal, session: SessionDep) -> RetryNowOut:
    """Send the attempt's next reminder now (admin), through the queue.

    The step is queued after this request commits; it counts as the next reminder, and the
    following one is scheduled from it by the policy.
    """
    attempt = get_attempt(session, organization_id=principal.organization_id, attempt_id=attempt_id)
    number = retry_service.retry_now(session, attempt=attempt)
    return RetryNowOut(attempt_id=attempt.id, retry_number=number)
