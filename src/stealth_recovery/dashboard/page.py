"""What every dashboard page shares: the route class, the templates, rendering, flashes and
who is looking.

Handlers stay thin: they read the form, call the same services as the API, and render. Every
page runs as the logged-in user of the session cookie and is scoped to their organization;
admin actions are refused on the server to analysts and operators, whatever the page showed.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from stealth_recovery.core.api import validation_messages
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.errors import DomainError
from stealth_recovery.dashboard import charts, formatting
from stealth_recovery.dashboard import login_cookie as web
from stealth_recovery.dashboard.overview import CHANNEL_LABELS

HERE = Path(__file__).resolve().parent
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


def page_router() -> APIRouter:
    """A page area's router: under /dashboard, out of the API document, answering in HTML."""
    return APIRouter(
        prefix="/dashboard",
        tags=["dashboard"],
        include_in_schema=False,
        route_class=DashboardRoute,
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
