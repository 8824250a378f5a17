"""Recovery attempts for the merchant: list, read, cancel, complete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query

from stealth_recovery.auth.deps import (
    AdminOrApiKeyPrincipal,
    CurrentPrincipal,
    Principal,
    require_roles,
)
from stealth_recovery.auth.idempotency import IdempotentRoute
from stealth_recovery.auth.models import Role
from stealth_recovery.core.api import DbId, Text, UtcDateTime, error_responses
from stealth_recovery.core.contacts import normalise_email
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.recovery import repository, service
from stealth_recovery.recovery.errors import AttemptNotOpen
from stealth_recovery.recovery.models import AttemptStatus
from stealth_recovery.recovery.presenters import (
    attempt_out,
    attempt_with_transaction,
    decode_cursor,
    encode_cursor,
)
from stealth_recovery.recovery.repository import AttemptFilters
from stealth_recovery.recovery.schemas import (
    AttemptOut,
    AttemptPage,
    CancelRequest,
    CompletedOut,
)

router = APIRouter(prefix="/v1", route_class=IdempotentRoute)

AttemptId = Annotated[DbId, Path(description="recovery attempt id")]
OperatorPrincipal = Annotated[Principal, Depends(require_roles(Role.admin, Role.operator))]


@router.get(
    "/attempts",
    response_model=AttemptPage,
    tags=["attempts"],
    responses=error_responses(401, 422),
)
def list_recovery_attempts(
    principal: CurrentPrincipal,
    session: SessionDep,
    status: Annotated[
        list[AttemptStatus] | None, Query(description="one or more statuses (repeat the key)")
    ] = None,
    created_from: Annotated[
        UtcDateTime | None, Query(description="opened at or after (with a time zone)")
    ] = None,
    created_to: Annotated[
        UtcDateTime | None, Query(description="opened before (with a time zone)")
    ] = None,
    transaction_ref: Annotated[Text | None, Query(max_length=255)] = None,
    customer_email: Annotated[Text | None, Query(max_length=320)] = None,
    cursor: Annotated[
        Text | None, Query(max_length=200, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> AttemptPage:
    """The organization's recovery attempts, newest first, with cursor pagination."""
    email = None
    if customer_email is not None:
        try:
            email = normalise_email(customer_email)
        except ValueError as exc:
            raise InvalidInput("customer_email", str(exc)) from None
    filters = AttemptFilters(
        statuses=[s.value for s in status or ()],
        created_from=created_from,
        created_to=created_to,
        transaction_ref=transaction_ref,
        customer_email=email,
    )
    rows = repository.list_attempts(
        session,
        organization_id=principal.organization_id,
        filters=filters,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1][0]) if len(rows) > limit else None
    return AttemptPage(items=[attempt_out(a, t) for a, t in page], next_cursor=next_cursor)


@router.get(
    "/attempts/{attempt_id}",
    response_model=AttemptOut,
    tags=["attempts"],
    responses=error_responses(401, 404, e404="no such attempt in the organization"),
)
def get_recovery_attempt(
    attempt_id: AttemptId, principal: CurrentPrincipal, session: SessionDep
) -> AttemptOut:
    """One attempt with its transaction and its next reminder."""
    attempt = service.get_attempt(
        session, organization_id=principal.organization_id, attempt_id=attempt_id
    )
    return attempt_with_transaction(session, attempt)


@router.post(
    "/attempts/{attempt_id}/cancel",
    response_model=AttemptOut,
    tags=["attempts"],
    responses=error_responses(
        401,
        403,
        404,
        409,
        422,
        e404="no such attempt in the organization",
        e409="the attempt is already completed, expired or cancelled",
    ),
)
def cancel_recovery_attempt(
    attempt_id: AttemptId,
    principal: OperatorPrincipal,
    session: SessionDep,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> AttemptOut:
    """Stop an open attempt (operator or admin): no reminder is sent after this."""
    attempt = service.get_attempt(
        session, organization_id=principal.organization_id, attempt_id=attempt_id
    )
    reason = body.reason if body is not None else CancelRequest().reason
    service.cancel_attempt(session, attempt=attempt, reason=reason)
    return attempt_with_transaction(session, attempt)


@router.post(
    "/recoveries/{attempt_id}/complete",
    response_model=CompletedOut,
    tags=["recoveries"],
    responses=error_responses(
        401,
        403,
        404,
        409,
        e404="no such attempt in the organization",
        e409="the attempt was cancelled or expired before the payment",
    ),
)
def complete_recovery(
    attempt_id: AttemptId, principal: AdminOrApiKeyPrincipal, session: SessionDep
) -> CompletedOut:
    """Mark the attempt paid (admin or API key); every pending reminder stops.

    For payments confirmed outside a connected provider (tests, the demo, your own checkout).
    Completing an already completed attempt answers 200 with `changed: false`.
    """
    attempt = service.get_attempt(
        session, organization_id=principal.organization_id, attempt_id=attempt_id
    )
    changed = service.complete_attempt(session, attempt=attempt, paid_via=service.PaidVia.API)
    if not changed and attempt.status != AttemptStatus.completed:
        raise AttemptNotOpen(f"attempt is already {attempt.status}")
    return CompletedOut(
        id=attempt.id, status=attempt.status, completed_at=attempt.completed_at, changed=changed
    )
