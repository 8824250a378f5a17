"""Signing in and out, and resetting a forgotten password."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import BackgroundTasks, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from stealth_recovery.auth import service as auth_service
from stealth_recovery.auth.endpoints import reset_email_text, reset_link
from stealth_recovery.auth.errors import ResetLinkInvalid
from stealth_recovery.auth.throttle import throttled_login
from stealth_recovery.core.api import Text
from stealth_recovery.core.database import ReadSessionDep, SessionDep
from stealth_recovery.core.errors import InvalidInput, RateLimited, Unauthorized
from stealth_recovery.core.mail import send_service_email
from stealth_recovery.core.settings import get_settings
from stealth_recovery.dashboard import forms
from stealth_recovery.dashboard import login_cookie as web
from stealth_recovery.dashboard.page import CsrfField, page_router, redirect, render

log = structlog.get_logger(__name__)

router = page_router()


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, None, "login.html", {"next": web.safe_next(next), "email": ""})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: ReadSessionDep,
    csrf: CsrfField = None,
    email: Annotated[Text, Form(max_length=320)] = "",
    password: Annotated[Text, Form(max_length=256)] = "",
    next: Annotated[Text | None, Form(max_length=2000)] = None,
) -> Response:
    web.check_csrf(request, csrf)
    form = {"next": web.safe_next(next), "email": email}
    try:
        user = throttled_login(
            request,
            email,
            lambda: auth_service.authenticate(session, email=email, password=password),
        )
    except RateLimited as exc:
        log.info("dashboard_login_throttled")
        page = render(
            request,
            None,
            "login.html",
            {**form, "error": "Too many login attempts. Please wait a few minutes."},
            status_code=429,
        )
        page.headers["Retry-After"] = str(max(1, round(exc.retry_after or 60)))
        return page
    except Unauthorized:
        log.info("dashboard_login_failed")
        return render(
            request,
            None,
            "login.html",
            {**form, "error": "Incorrect email or password."},
            status_code=401,
        )
    token, expires_in = auth_service.issue_token(user)
    response = redirect(web.safe_next(next))
    web.set_session_cookie(response, token, expires_in)
    log.info("dashboard_login", user_id=user.id, organization_id=user.organization_id)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, csrf: CsrfField = None) -> Response:
    web.check_csrf(request, csrf)
    try:
        viewer = web.current_viewer(request, session)
    except web.LoginRequired:
        viewer = None
    if viewer is not None:
        # The cookie's token stops working on the server too, not only in this browser.
        auth_service.logout(session, user_id=viewer.user.id)
        log.info("dashboard_logout", user_id=viewer.user.id)
    response = redirect("/dashboard/login")
    web.clear_session_cookie(response)
    return response


@router.get("/forgot-password", response_class=HTMLResponse)
def forgot_password_form(request: Request) -> HTMLResponse:
    return render(request, None, "forgot_password.html", {"email": "", "sent": False})


@router.post("/forgot-password", response_class=HTMLResponse)
def forgot_password(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    csrf: CsrfField = None,
    email: Annotated[str, Form(max_length=320)] = "",
) -> HTMLResponse:
    web.check_csrf(request, csrf)
    settings = get_settings()
    address = forms.email_address(email)
    if address is None:
        return render(
            request,
            None,
            "forgot_password.html",
            {"email": email, "sent": False, "error": "Enter a valid email address."},
            status_code=422,
        )
    requested = auth_service.request_password_reset(session, email=address)
    if requested is not None:
        user, token = requested
        link = reset_link(token)
        background.add_task(
            send_service_email,
            to=user.email,
            subject="Reset your Stealth Recovery password",
            text=reset_email_text(link, settings.password_reset_ttl_minutes),
        )
    # The same page whether or not the address has an account.
    return render(
        request,
        None,
        "forgot_password.html",
        {"sent": True, "minutes": settings.password_reset_ttl_minutes},
    )


@router.get("/reset-password", response_class=HTMLResponse)
def reset_password_form(
    request: Request, token: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    error = None if token else "This link is incomplete: open the whole link from the e-mail."
    return render(request, None, "reset_password.html", {"token": token, "error": error})


@router.post("/reset-password", response_class=HTMLResponse)
def reset_password(
    request: Request,
    session: SessionDep,
    csrf: CsrfField = None,
    token: Annotated[str, Form(max_length=200)] = "",
    new_password: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    web.check_csrf(request, csrf)
    try:
        user = auth_service.reset_password(session, token=token, new_password=new_password)
    except ResetLinkInvalid:
        message = "This link has expired or was already used. Ask for a new one."
        return render(
            request,
            None,
            "reset_password.html",
            {"token": "", "error": message},
            status_code=422,
        )
    except InvalidInput as exc:
        return render(
            request,
            None,
            "reset_password.html",
            {"token": token, "error": f"The new password {exc.rule}"},
            status_code=422,
        )
    log.info("password_reset", user_id=user.id)
    return redirect(
        "/dashboard/login", flash=("ok", "Your password is changed. Log in with the new one.")
    )
