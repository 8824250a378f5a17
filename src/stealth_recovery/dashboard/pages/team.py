"""Users and API keys (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from stealth_recovery.auth import service as auth_service
from stealth_recovery.auth.models import Role
from stealth_recovery.core.api import DbId, Text
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.errors import DomainError
from stealth_recovery.dashboard import forms
from stealth_recovery.dashboard import login_cookie as web
from stealth_recovery.dashboard.page import (
    AdminFormViewer,
    AdminViewer,
    page_router,
    redirect,
    render,
)

router = page_router()


def _team_page(
    request: Request,
    session: Session,
    viewer: web.Viewer,
    *,
    user_form: dict[str, str] | None = None,
    user_error: str | None = None,
    new_key: str | None = None,
    key_error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        viewer,
        "team.html",
        {
            "active": "team",
            "users": auth_service.list_users(session, organization_id=viewer.organization_id),
            "api_keys": auth_service.list_api_keys(session, organization_id=viewer.organization_id),
            "mask_key": auth_service.mask_key,
            "roles": [r.value for r in Role],
            "user_form": user_form or {"email": "", "full_name": "", "role": Role.analyst},
            "user_error": user_error,
            "new_key": new_key,
            "key_error": key_error,
        },
        status_code=status_code,
    )


@router.get("/team", response_class=HTMLResponse)
def team(request: Request, session: SessionDep, viewer: AdminViewer) -> HTMLResponse:
    return _team_page(request, session, viewer)


@router.post("/users", response_class=HTMLResponse)
def create_user(
    request: Request,
    session: SessionDep,
    viewer: AdminFormViewer,
    email: Annotated[Text, Form()] = "",
    full_name: Annotated[Text, Form()] = "",
    role: Annotated[Text, Form()] = "",
    password: Annotated[Text, Form()] = "",
) -> Response:
    form = {"email": email, "full_name": full_name, "role": role}
    address, error = forms.check_new_user(
        email=email, role=role, password=password, full_name=full_name
    )
    if address is not None:
        try:
            user = auth_service.create_user(
                session,
                organization_id=viewer.organization_id,
                email=address,
                password=password,
                role=Role(role),
                full_name=full_name.strip() or None,
            )
        except DomainError as exc:
            error = "That email is already registered." if exc.status_code == 409 else exc.detail
    if error is not None:
        return _team_page(
            request, session, viewer, user_form=form, user_error=error, status_code=422
        )
    return redirect("/dashboard/team", flash=("ok", f"{user.email} can now log in as {role}."))


@router.post("/users/{user_id}/deactivate")
def deactivate_user(session: SessionDep, user_id: DbId, viewer: AdminFormViewer) -> Response:
    try:
        user = auth_service.deactivate_user(
            session,
            organization_id=viewer.organization_id,
            user_id=user_id,
            acting_user_id=viewer.user.id,
        )
    except DomainError as exc:
        if exc.status_code == 404:
            raise
        return redirect("/dashboard/team", flash=("error", "You cannot deactivate yourself."))
    return redirect("/dashboard/team", flash=("ok", f"{user.email} is deactivated."))


@router.post("/api-keys", response_class=HTMLResponse)
def create_api_key(
    request: Request,
    session: SessionDep,
    viewer: AdminFormViewer,
    name: Annotated[Text, Form()] = "",
) -> Response:
    key_error = forms.check_api_key_name(name)
    if key_error is not None:
        return _team_page(request, session, viewer, key_error=key_error, status_code=422)
    _, plain = auth_service.create_api_key(
        session,
        organization_id=viewer.organization_id,
        name=name.strip(),
        created_by_id=viewer.user.id,
    )
    # The key is shown in this response only; it is never stored in clear.
    return _team_page(request, session, viewer, new_key=plain)


@router.post("/api-keys/{api_key_id}/revoke")
def revoke_api_key(session: SessionDep, api_key_id: DbId, viewer: AdminFormViewer) -> Response:
    api_key = auth_service.revoke_api_key(
        session, organization_id=viewer.organization_id, api_key_id=api_key_id
    )
    return redirect("/dashboard/team", flash=("ok", f"Key “{api_key.name}” is revoked."))
