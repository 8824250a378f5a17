"""Failed-payment ingestion: `POST /v1/events/payment_failed`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status

from stealth_recovery.auth.deps import IngestPrincipal
from stealth_recovery.auth.idempotency import IdempotentRoute
from stealth_recovery.core.api import SHED_RESPONSE, error_responses
from stealth_recovery.core.database import SessionDep
from stealth_recovery.ingestion.schemas import PAYMENT_FAILED_EXAMPLE, PaymentFailedIn
from stealth_recovery.ingestion.service import FailureInput, record_failure
from stealth_recovery.recovery.presenters import attempt_out, attempt_with_transaction
from stealth_recovery.recovery.schemas import ATTEMPT_EXAMPLE, AttemptOut

router = APIRouter(prefix="/v1/events", tags=["ingestion"], route_class=IdempotentRoute)

_BODY_EXAMPLES: dict[str, Any] = {
    "full": {"summary": "every field", "value": PAYMENT_FAILED_EXAMPLE},
    "minimal": {
        "summary": "only what is required, plus an email to remind",
        "value": {
            "transaction_ref": "order-77",
            "amount_minor": 1250,
            "currency": "USD",
            "customer_email": "sam@example.com",
            "occurred_at": "2026-11-01T08:30:00-05:00",
        },
    },
}

_EXISTING: dict[int | str, dict[str, Any]] = {
    200: {
        "model": AttemptOut,
        "description": "the failure was already reported, or the transaction already has an "
        "open attempt: that attempt is returned and nothing new is opened",
        "content": {"application/json": {"example": {**ATTEMPT_EXAMPLE, "status": "sent"}}},
    }
}


@router.post(
    "/payment_failed",
    status_code=status.HTTP_201_CREATED,
    response_model=AttemptOut,
    responses={
        **_EXISTING,
        201: {
            "description": "a recovery attempt was opened (a hard decline opens it `cancelled`: "
            "no reminder is ever sent)",
            "content": {"application/json": {"example": ATTEMPT_EXAMPLE}},
        },
        **error_responses(401, 403, 422),
        **SHED_RESPONSE,
    },
)
def payment_failed(
    body: Annotated[PaymentFailedIn, Body(openapi_examples=_BODY_EXAMPLES)],
    principal: IngestPrincipal,
    session: SessionDep,
    response: Response,
) -> AttemptOut:
    """Report a failed payment (API key, admin or operator) and get its recovery attempt.

    Stores the transaction and the failure, and opens a recovery attempt with a pay link valid
    for `ATTEMPT_TTL_DAYS` (7 by default) and the reminder schedule of the active retry policy.
    Idempotent: the same `idempotency_key` again, or a new failure of a transaction whose attempt
    is still open, returns the existing attempt with 200.
    """
    result = record_failure(
        session,
        organization_id=principal.organization_id,
        data=FailureInput(
            external_ref=body.transaction_ref,
            amount_minor=body.amount_minor,
            currency=body.currency,
            customer_email=body.customer_email,
            customer_phone=body.customer_phone,
            customer_name=body.customer_name,
            customer_locale=body.customer_locale,
            customer_timezone=body.customer_timezone,
            gateway=body.gateway,
            reason=body.failure_reason,
            decline_code=body.decline_code,
            occurred_at=body.occurred_at,
            idempotency_key=body.idempotency_key,
            psp_customer_id=body.psp_customer_id,
            psp_payment_id=body.psp_payment_id,
            raw_metadata=body.metadata,
        ),
        policy_stamp=principal.policy_stamp,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    if result.transaction is not None:
        return attempt_out(result.attempt, result.transaction)
    return attempt_with_transaction(session, result.attempt)
