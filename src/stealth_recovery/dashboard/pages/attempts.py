"""Attempts: the filtered list, one attempt's timeline, its pay-page preview, Retry now."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Annotated
from urllib.parse import urlencode

import structlog
from fastapi import Query, Request, Response
from fastapi.responses import HTMLResponse

from stealth_recovery.core.api import DbId
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.errors import DomainError
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.dashboard import formatting, repository, timeline
from stealth_recovery.dashboard.page import (
    AdminFormViewer,
    Viewer,
    error_page,
    page_router,
    redirect,
    render,
)
from stealth_recovery.notifications import repository as logs_repository
from stealth_recovery.paylink.pages import pay_page_response
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.recovery import repository as attempts_repository
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import AttemptStatus
from stealth_recovery.retry.runtime import get_runtime
from stealth_recovery.retry.service import claim_now, retry_now

log = structlog.get_logger(__name__)

PAGE_SIZE = 25
MAX_PAGE = 1_000_000  # keeps the OFFSET inside a 64-bit integer, whatever the URL says

router = page_router()


def _parse_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


@router.get("/attempts", response_class=HTMLResponse)
def attempts(
    request: Request,
    session: SessionDep,
    viewer: Viewer,
    status: str | None = None,
    decline_category: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    created_from: str | None = None,
    created_to: str | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> HTMLResponse:
    statuses = ["open", *(s.value for s in AttemptStatus)]
    categories = [c.value for c in DeclineCategory]
    filters = attempts_repository.AttemptSearch(
        status=status if status in statuses else None,
        decline_category=decline_category if decline_category in categories else None,
        search=q.strip() if q and q.strip() else None,
        created_from=_parse_day(created_from),
        created_to=_parse_day(created_to),
    )
    rows, total = attempts_repository.search_attempts(
        session,
        organization_id=viewer.organization_id,
        search=filters,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    pages = max(1, math.ceil(total / PAGE_SIZE))
    query = {
        k: v
        for k, v in {
            "status": filters.status,
            "decline_category": filters.decline_category,
            "q": filters.search,
            "created_from": filters.created_from.isoformat() if filters.created_from else None,
            "created_to": filters.created_to.isoformat() if filters.created_to else None,
        }.items()
        if v
    }

    def page_url(n: int) -> str:
        return "/dashboard/attempts?" + urlencode({**query, "page": n})

    return render(
        request,
        viewer,
        "attempts.html",
        {
            "active": "attempts",
            "rows": rows,
            "total": total,
            "page": min(page, pages),
            "pages": pages,
            "first": (page - 1) * PAGE_SIZE + 1 if rows else 0,
            "last": (page - 1) * PAGE_SIZE + len(rows),
            "filters": filters,
            "statuses": statuses,
            "categories": categories,
            "prev_url": page_url(page - 1) if page > 1 else None,
            "next_url": page_url(page + 1) if page < pages else None,
            "filtered": bool(query),
        },
    )


@router.get("/attempts/{attempt_id}", response_class=HTMLResponse)
def attempt_detail(
    request: Request, session: SessionDep, viewer: Viewer, attempt_id: DbId
) -> HTMLResponse:
    attempt = recovery_service.get_attempt(
        session, organization_id=viewer.organization_id, attempt_id=attempt_id
    )
    transaction = repository.transaction_of(session, attempt)
    failure = repository.failure_of(session, attempt)
    logs = logs_repository.logs_of_attempt(
        session, organization_id=attempt.organization_id, attempt_id=attempt.id, by_step=True
    )
    settings = get_settings()
    now = utc_now()
    payable = attempt.is_open and attempt.expires_at > now
    can_retry = payable and attempt.retry_count < attempt.max_retries
    return render(
        request,
        viewer,
        "attempt.html",
        {
            "active": "attempts",
            "attempt": attempt,
            "transaction": transaction,
            "failure": failure,
            "logs": logs,
            "timeline": timeline.build_timeline(
                attempt, failure, logs, lease=timedelta(seconds=settings.queue_lease_seconds)
            ),
            "can_retry": can_retry,
            "can_preview": payable,
            "reminders_out": timeline.reminders_out(logs),
            "reminders_kept": timeline.reminders_kept(logs),
            "pay_url": recovery_service.pay_url(attempt),
        },
    )


@router.get("/attempts/{attempt_id}/pay-preview", response_class=HTMLResponse)
def attempt_pay_preview(
    request: Request, session: SessionDep, viewer: Viewer, attempt_id: DbId
) -> HTMLResponse:
    """The customer's pay page as an operator preview: the attempt is not marked `opened`."""
    attempt = recovery_service.get_attempt(
        session, organization_id=viewer.organization_id, attempt_id=attempt_id
    )
    if not attempt.is_open or attempt.expires_at <= utc_now():
        return error_page(
            request, 409, f"This attempt is {attempt.status}: its pay link can no longer be paid."
        )
    response = pay_page_response(request, session, attempt, preview=True)
    response.headers["X-Frame-Options"] = "DENY"
    return response


@router.post("/attempts/{attempt_id}/retry-now")
def attempt_retry_now(session: SessionDep, attempt_id: DbId, viewer: AdminFormViewer) -> Response:
    """Send the next reminder now; the flash says what the timeline then shows.

    Embedded layout: the step is claimed, committed and sent in this process before the
    redirect, so the flash tells its outcome. Celery layout: the step is claimed and handed to
    the broker; the flash and the timeline both say it is in the worker's hands since then.
    """
    attempt = recovery_service.get_attempt(
        session, organization_id=viewer.organization_id, attempt_id=attempt_id
    )
    target = f"/dashboard/attempts/{attempt.id}"
    embedded = get_settings().broker_url is None
    try:
        if embedded:
            step = claim_now(session, attempt=attempt)
        else:
            number = retry_now(session, attempt=attempt)
    except DomainError as exc:
        return redirect(target, flash=("error", exc.detail))
    if embedded:
        # The claim is recorded before any provider call, as a queue pass records its own.
        session.commit()
        report = get_runtime().run_steps([step])
        session.expire_all()
        logs = [
            log_row
            for log_row in logs_repository.logs_of_attempt(
                session,
                organization_id=attempt.organization_id,
                attempt_id=attempt.id,
                by_step=True,
            )
            if log_row.retry_number == step.retry_number
        ]
        log.info("dashboard_retry_now", attempt_id=attempt.id, retry_number=step.retry_number)
        retry_at = formatting.when(attempt.next_retry_at) if report.deferred else None
        flash = timeline.sent_now_flash(step.retry_number, attempt, logs, retry_at=retry_at)
        return redirect(target, flash=flash)
    log.info("dashboard_retry_now", attempt_id=attempt.id, retry_number=number)
    title = timeline.handed_over_title(number, attempt.max_retries)
    return redirect(
        target,
        flash=(
            "ok",
            f"{title} at {formatting.when(utc_now())}; the timeline shows it as sent once the "
            "worker records it.",
        ),
    )
