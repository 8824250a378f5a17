"""Retry policies: the list, the schedule preview, creating, editing, activating,
deactivating."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import Depends, Form, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from stealth_recovery.core.api import DbId, Text
from stealth_recovery.core.database import SessionDep
from stealth_recovery.dashboard import forms
from stealth_recovery.dashboard import login_cookie as web
from stealth_recovery.dashboard.page import (
    AdminFormViewer,
    FormViewer,
    Viewer,
    page_router,
    redirect,
    render,
)
from stealth_recovery.notifications.models import Channel
from stealth_recovery.recovery.windows import DAY_NAMES
from stealth_recovery.retry import policy as policy_service
from stealth_recovery.retry import repository as retry_repository

log = structlog.get_logger(__name__)

router = page_router()


def _policies_page(
    request: Request,
    session: Session,
    viewer: web.Viewer,
    *,
    form: dict[str, Any],
    errors: dict[str, str],
    preview: list[dict[str, Any]] | None,
    status_code: int = 200,
    editing: int | None = None,
) -> HTMLResponse:
    policies = retry_repository.list_for_org(session, organization_id=viewer.organization_id)
    effective = policy_service.effective_policy(session, organization_id=viewer.organization_id)
    schedules = {p.id: forms.schedule_rows(policy_service.schedule_of(p)) for p in policies}
    return render(
        request,
        viewer,
        "policies.html",
        {
            "active": "policies",
            "policies": policies,
            "schedules": schedules,
            "effective": effective,
            "default_schedule": forms.schedule_rows(policy_service.DEFAULT_SCHEDULE),
            "form": form,
            "errors": errors,
            "preview": preview,
            "channels": [c.value for c in Channel],
            "days": DAY_NAMES,
            "windows": {p.id: forms.window_text(p) for p in policies},
            "editing": editing,
        },
        status_code=status_code,
    )


@router.get("/policies", response_class=HTMLResponse)
def policies(request: Request, session: SessionDep, viewer: Viewer) -> HTMLResponse:
    return _policies_page(
        request, session, viewer, form=forms.default_policy_form(), errors={}, preview=None
    )


PolicyText = Annotated[Text, Form()]


def _policy_form(
    name: PolicyText = "",
    max_retries: PolicyText = "",
    initial_delay_minutes: PolicyText = "",
    backoff_multiplier: PolicyText = "",
    max_delay_minutes: PolicyText = "",
    enabled_channels: Annotated[list[Text] | None, Form()] = None,
    window_start: PolicyText = "",
    window_end: PolicyText = "",
    window_days: Annotated[list[Text] | None, Form()] = None,
    window_skip_holidays: PolicyText = "",
    preview_timezone: PolicyText = "UTC",
    preview_country: PolicyText = "",
) -> dict[str, Any]:
    """The policy form as typed: strings kept as they are, so errors can show them again."""
    return {
        "name": name,
        "max_retries": max_retries,
        "initial_delay_minutes": initial_delay_minutes,
        "backoff_multiplier": backoff_multiplier,
        "max_delay_minutes": max_delay_minutes,
        "enabled_channels": enabled_channels or [],
        "window_start": window_start,
        "window_end": window_end,
        "window_days": window_days or [],
        "window_skip_holidays": bool(window_skip_holidays),
        "preview_timezone": preview_timezone,
        "preview_country": preview_country,
    }


PolicyForm = Annotated[dict[str, Any], Depends(_policy_form)]


@router.post("/policies/preview", response_class=HTMLResponse)
def preview_policy(
    request: Request,
    session: SessionDep,
    form: PolicyForm,
    viewer: FormViewer,
) -> HTMLResponse:
    """The schedule some numbers and window would produce for a payment failing now, in the
    customer's time (the preview's zone and country); saves nothing (any role)."""
    # A preview needs the numbers only: a missing name is not an error yet.
    values, errors = forms.validate_policy_form({**form, "name": form["name"] or "preview"})
    place, place_errors = forms.preview_place(form)
    errors = {**place_errors, **errors}
    rows = None
    if not errors:
        rows = forms.schedule_rows(forms.schedule_of_values(values), place)
    return _policies_page(
        request,
        session,
        viewer,
        form=form,
        errors=errors,
        preview=rows,
        status_code=200 if rows is not None else 422,
    )


@router.post("/policies", response_class=HTMLResponse)
def create_policy(
    request: Request,
    session: SessionDep,
    form: PolicyForm,
    viewer: AdminFormViewer,
) -> Response:
    values, errors = forms.validate_policy_form(form)
    if errors:
        return _policies_page(
            request, session, viewer, form=form, errors=errors, preview=None, status_code=422
        )
    policy = policy_service.create_policy(session, organization_id=viewer.organization_id, **values)
    log.info("dashboard_policy_created", policy_id=policy.id)
    return redirect(
        "/dashboard/policies",
        flash=("ok", f"Policy “{policy.name}” created; it now applies to new attempts."),
    )


@router.get("/policies/{policy_id}/edit", response_class=HTMLResponse)
def edit_policy_form(
    request: Request, session: SessionDep, policy_id: DbId, viewer: Viewer
) -> HTMLResponse:
    """The form filled with a policy, to change its numbers, channels and send window."""
    policy = policy_service.get_policy(
        session, organization_id=viewer.organization_id, policy_id=policy_id
    )
    return _policies_page(
        request,
        session,
        viewer,
        form=forms.policy_form_of(policy),
        errors={},
        preview=None,
        editing=policy.id,
    )


@router.post("/policies/{policy_id}/edit", response_class=HTMLResponse)
def edit_policy(
    request: Request,
    session: SessionDep,
    policy_id: DbId,
    form: PolicyForm,
    viewer: AdminFormViewer,
) -> Response:
    """Save a policy's new values (admins); attempts already open keep what they copied."""
    values, errors = forms.validate_policy_form(form)
    if errors:
        return _policies_page(
            request,
            session,
            viewer,
            form=form,
            errors=errors,
            preview=None,
            status_code=422,
            editing=policy_id,
        )
    policy = policy_service.update_policy(
        session, organization_id=viewer.organization_id, policy_id=policy_id, **values
    )
    log.info("dashboard_policy_updated", policy_id=policy.id)
    return redirect(
        "/dashboard/policies",
        flash=("ok", f"Policy “{policy.name}” saved; attempts already open keep their schedule."),
    )


@router.post("/policies/{policy_id}/activate")
def activate_policy(session: SessionDep, policy_id: DbId, viewer: AdminFormViewer) -> Response:
    policy = policy_service.activate_policy(
        session, organization_id=viewer.organization_id, policy_id=policy_id
    )
    return redirect("/dashboard/policies", flash=("ok", f"Policy “{policy.name}” is now active."))


@router.post("/policies/{policy_id}/deactivate")
def deactivate_policy(session: SessionDep, policy_id: DbId, viewer: AdminFormViewer) -> Response:
    policy = policy_service.deactivate_policy(
        session, organization_id=viewer.organization_id, policy_id=policy_id
    )
    return redirect(
        "/dashboard/policies",
        flash=("ok", f"Policy “{policy.name}” deactivated; new attempts get the default."),
    )
