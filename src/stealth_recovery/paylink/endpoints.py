"""The pay page's JSON twin: `GET /v1/recoveries/by_token/{token}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from stealth_recovery.core.api import error_responses
from stealth_recovery.core.database import SessionDep
from stealth_recovery.paylink.deps import limit_token_lookups
from stealth_recovery.recovery.presenters import pay_page
from stealth_recovery.recovery.schemas import RecoveryView
from stealth_recovery.recovery.service import attempt_by_token

router = APIRouter(prefix="/v1", dependencies=[Depends(limit_token_lookups)])


@router.get(
    "/recoveries/by_token/{token}",
    response_model=RecoveryView,
    tags=["recoveries"],
    responses=error_responses(
        404,
        410,
        429,
        e404="no pay link with this token",
        e410="the pay link has expired, or its payment is made or cancelled",
        e429="too many lookups from this address (`TOKEN_RATE_LIMIT_PER_MINUTE`)",
    ),
)
def recovery_by_token(
    token: Annotated[str, Path(max_length=200)], session: SessionDep
) -> RecoveryView:
    """What the customer's pay page shows, as JSON (no authentication: the token is the key).

    Only the HTML page marks the attempt `opened`; this lookup does not.
    """
    return pay_page(session, attempt_by_token(session, token)).view
