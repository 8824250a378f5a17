"""The signed-in person's own account: changing their password."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Form, Request, Response
from fastapi.responses import HTMLResponse

from stealth_recovery.auth import service as auth_service
from stealth_recovery.auth.errors import WrongCurrentPassword
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.dashboard import login_cookie as web
from stealth_recovery.dashboard.page import FormViewer, Viewer, page_router, redirect, render

log = structlog.get_logger(__name__)

router = page_router()


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, viewer: Viewer) -> HTMLResponse:
    return render(request, viewer, "account.html", {"active": "account"})


@router.post("/account/password", response_class=HTMLResponse)
def change_password(
    request: Request,
    session: SessionDep,
    viewer: FormViewer,
    current_password: Annotated[str, Form(max_length=256)] = "",
    new_password: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    try:
        user = auth_service.change_password(
            session,
            user_id=viewer.user.id,
            current_password=current_password,
            new_password=new_password,
        )
    except InvalidInput as exc:
        message = (
            "That is not your current password."
            if isinstance(exc, WrongCurrentPassword)
            else f"The new password {exc.rule}"
        )
        return render(
            request,
            viewer,
            "account.html",
            {"active": "account", "error": message},
            status_code=422,
        )
    # Every earlier token is void now, this browser's too: it gets a fresh one.
    token, expires_in = auth_service.issue_token(user)
    response = redirect("/dashboard/account", flash=("ok", "Your password is changed."))
    web.set_session_cookie(response, token, expires_in)
    log.info("password_changed", user_id=user.id)
    return response
