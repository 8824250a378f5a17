"""The operators' dashboard: server-rendered pages under /dashboard.

Handlers stay thin: they read the form, call the same services as the API, and render. Every
page runs as the logged-in user of the session cookie and is scoped to their organization;
admin actions are refused on the server to analysts and operators, whatever the page showed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode

import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from stealth_recovery.auth import service as auth_service
from stealth_recovery.auth.deps import ReadSessionDep, SessionDep
from stealth_recovery.auth.endpoints import reset_email_text
from stealth_recovery.auth.models import Role
from stealth_recovery.auth.throttle import throttled_login
from stealth_recovery.core.api import DbId, Text, validation_messages
from stealth_recovery.core.errors import DomainError, InvalidInput, RateLimited, Unauthorized
from stealth_recovery.core.mail import send_service_email
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.dashboard import charts, formatting, forms, repository, timeline
from stealth_recovery.dashboard import login_cookie as web
from stealth_recovery.dashboard.overview import CHANNEL_LABELS, PERIODS, build_overview
from stealth_recovery.notifications.models import Channel
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import AttemptStatus
from stealth_recovery.retry import policy as policy_service
from stealth_recovery.retry import repository as retry_repository

log = structlog.get_logger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_FILES = {"dashboard.css": "text/css"}
PAGE_SIZE = 25
MAX_PAGE = 1_000_000  # keeps the OFFSET inside a 64-bit integer, whatever the URL says
FLASH_COOKIE = "sr_flash"

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["money"] = formatting.money
templates.env.filters["when"] = formatting.when
templates.env.filters["relative"] = formatting.relative
templates.env.filters["duration"] = formatting.duration
templates.env.globals["percent"] = formatting.percent
templates.env.globals["STATUS_COLOURS"] = charts.STATUS_COLOURS
templates.env.globals["CHANNEL_LABELS"] = CHANNEL_LABELS


class DashboardRoute(APIRoute):
    """Pages answer in HTML: a missing session redirects to the login form, an error is a page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except web.LoginRequired as exc:
                target = "/dashboard/login?" + urlencode({"next": exc.next_path})
                return RedirectResponse(target, status_code=303)
            except DomainError as exc:
                return error_page(request, exc.status_code, exc.detail)
            except RequestValidationError as exc:
                # A page's URL or form that no route would take: an id that cannot exist is
                # "not found", anything else names the field and the rule.
                errors = exc.errors()
                if any(e.get("loc", ("",))[0] == "path" for e in errors):
                    return error_page(request, 404, "There is nothing at this address.")
                return error_page(request, 422, "; ".join(validation_messages(errors)))

        return route


router = APIRouter(
    prefix="/dashboard", tags=["dashboard"], include_in_schema=False, route_class=DashboardRoute
)


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    titles = {
        403: "Not allowed",
        404: "Not found",
        409: "Not possible right now",
        422: "The form could not be read",
    }
    return templates.TemplateResponse(
        request,
        "error.html",
        {"title": titles.get(status_code, "Something went wrong"), "message": message},
        status_code=status_code,
    )


def _flash(response: Response, kind: str, message: str) -> None:
    response.set_cookie(
        FLASH_COOKIE,
        quote(f"{kind}|{message}"[:300]),
        max_age=60,
        path="/dashboard",
        httponly=True,
        samesite="lax",
    )


def _read_flash(request: Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, message = unquote(raw).partition("|")
    return (kind if kind in {"ok", "error"} else "ok", message)


def render(
    request: Request,
    viewer: web.Viewer | None,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    flash = _read_flash(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "viewer": viewer,
            "csrf_token": web.csrf_token(request),
            "flash": flash,
            "active": context.pop("active", ""),
            **context,
        },
        status_code=status_code,
    )
    web.set_csrf_cookie_if_new(request, response)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/dashboard")
    # Pages hold customer data: never cache them, never frame them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def redirect(path: str, *, flash: tuple[str, str] | None = None) -> RedirectResponse:
    response = RedirectResponse(path, status_code=303)
    if flash is not None:
        _flash(response, *flash)
    return response


CsrfField = Annotated[str | None, Form(alias=web.CSRF_FIELD, max_length=256)]


def _viewer(request: Request, session: SessionDep) -> web.Viewer:
    return web.current_viewer(request, session)


def _form_viewer(
    viewer: Annotated[web.Viewer, Depends(_viewer)], request: Request, csrf: CsrfField = None
) -> web.Viewer:
    web.check_csrf(request, csrf)
    return viewer


def _admin(viewer: Annotated[web.Viewer, Depends(_viewer)]) -> web.Viewer:
    web.require_admin(viewer)
    return viewer


def _admin_form(viewer: Annotated[web.Viewer, Depends(_form_viewer)]) -> web.Viewer:
    web.require_admin(viewer)
    return viewer


# Who is looking: a signed-in person; one who submitted a valid form; an admin; both.
Viewer = Annotated[web.Viewer, Depends(_viewer)]
FormViewer = Annotated[web.Viewer, Depends(_form_viewer)]
AdminViewer = Annotated[web.Viewer, Depends(_admin)]
AdminFormViewer = Annotated[web.Viewer, Depends(_admin_form)]


# --- static ----------------------------------------------------------------------------------


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "public, max-age=3600"},
    )


# --- login -----------------------------------------------------------------------------------


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


# --- passwords -------------------------------------------------------------------------------


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
        link = f"{settings.base_url.rstrip('/')}/dashboard/reset-password?token={token}"
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
    except InvalidInput as exc:
        if exc.field == "token":
            message = "This link has expired or was already used. Ask for a new one."
            return render(
                request,
                None,
                "reset_password.html",
                {"token": "", "error": message},
                status_code=422,
            )
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
            if exc.field == "current_password"
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


# --- overview --------------------------------------------------------------------------------


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


# --- attempts --------------------------------------------------------------------------------


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
    filters = repository.AttemptFilters(
        status=status if status in statuses else None,
        decline_category=decline_category if decline_category in categories else None,
        search=q.strip() if q and q.strip() else None,
        created_from=_parse_day(created_from),
        created_to=_parse_day(created_to),
    )
    rows, total = repository.list_attempts(
        session,
        organization_id=viewer.organization_id,
        filters=filters,
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
    logs = repository.notifications_of(session, attempt)
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
    from stealth_recovery.paylink.pages import pay_page_response

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
    from stealth_recovery.retry.service import claim_now, retry_now

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
        from stealth_recovery.retry.runtime import get_runtime

        # The claim is recorded before any provider call, as a queue pass records its own.
        session.commit()
        report = get_runtime().run_steps([step])
        session.expire_all()
        logs = [
            log_row
            for log_row in repository.notifications_of(session, attempt)
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


# --- local outbox ----------------------------------------------------------------------------

OUTBOX_PAGE_SIZE = 50


@router.get("/outbox", response_class=HTMLResponse)
def outbox(
    request: Request, session: SessionDep, viewer: Viewer, channel: str = Channel.email.value
) -> HTMLResponse:
    """Messages the local outbox kept instead of sending, per channel, newest first."""
    from stealth_recovery.core.settings import get_settings
    from stealth_recovery.notifications.outbox import outbox_channels

    channel = channel if channel in {c.value for c in Channel} else Channel.email.value
    return render(
        request,
        viewer,
        "outbox.html",
        {
            "active": "outbox",
            "channel": channel,
            "channels": [c.value for c in Channel],
            "counts": repository.outbox_counts(session, organization_id=viewer.organization_id),
            "messages": repository.outbox_messages(
                session,
                organization_id=viewer.organization_id,
                channel=channel,
                limit=OUTBOX_PAGE_SIZE,
            ),
            "routed_here": sorted(outbox_channels(get_settings())),
            "page_size": OUTBOX_PAGE_SIZE,
        },
    )


# --- retry policies --------------------------------------------------------------------------


def _policies_page(
    request: Request,
    session: Session,
    viewer: web.Viewer,
    *,
    form: dict[str, Any],
    errors: dict[str, str],
    preview: list[dict[str, Any]] | None,
    status_code: int = 200,
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
) -> dict[str, Any]:
    """The policy form as typed: strings kept as they are, so errors can show them again."""
    return {
        "name": name,
        "max_retries": max_retries,
        "initial_delay_minutes": initial_delay_minutes,
        "backoff_multiplier": backoff_multiplier,
        "max_delay_minutes": max_delay_minutes,
        "enabled_channels": enabled_channels or [],
    }


PolicyForm = Annotated[dict[str, Any], Depends(_policy_form)]


@router.post("/policies/preview", response_class=HTMLResponse)
def preview_policy(
    request: Request,
    session: SessionDep,
    form: PolicyForm,
    viewer: FormViewer,
) -> HTMLResponse:
    """The schedule some numbers would produce; saves nothing (any role)."""
    # A preview needs the numbers only: a missing name is not an error yet.
    values, errors = forms.validate_policy_form({**form, "name": form["name"] or "preview"})
    rows = None
    if not errors:
        rows = forms.schedule_rows(forms.schedule_of_values(values))
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


# --- users and API keys ----------------------------------------------------------------------


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
