"""The overview: the period's figures and charts, and the policy in force."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from stealth_recovery.core.database import SessionDep
from stealth_recovery.dashboard.overview import PERIODS, build_overview
from stealth_recovery.dashboard.page import Viewer, page_router, render
from stealth_recovery.retry import policy as policy_service

router = page_router()


@router.get("", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep, viewer: Viewer, days: int = 30) -> HTMLResponse:
    period = days if days in PERIODS else 30
    data = build_overview(session, organization_id=viewer.organization_id, period_days=period)
    active = policy_service.effective_policy(session, organization_id=viewer.organization_id)
    return render(
        request,
        viewer,
        "overview.html",
        {"active": "overview", "o": data, "periods": PERIODS, "policy": active},
    )
