"""Dashboard pages of merchant webhooks: endpoints (a disabled one says why), each endpoint's
delivery log with replay, secret rotation. The same services as /v1/webhook-endpoints."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from stealth_recovery.core.api import DbId, Text
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.dashboard import login_cookie as web
from stealth_recovery.dashboard.page import AdminFormViewer, Viewer, page_router, redirect, render
from stealth_recovery.webhooks import repository, service
from stealth_recovery.webhooks.endpoints import deliveries_out
from stealth_recovery.webhooks.service import EVENT_TYPES

router = page_router()


def _list_page(
    request: Request,
    session: Session,
    viewer: web.Viewer,
    *,
    error: str | None = None,
    form: dict[str, object] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        viewer,
        "webhooks.html",
        {
            "active": "webhooks",
            "endpoints": repository.list_endpoints(session, organization_id=viewer.organization_id),
            "event_types": EVENT_TYPES,
            "error": error,
            "form": form or {"url": "", "event_types": []},
        },
        status_code=status_code,
    )


def _endpoint_page(
    request: Request,
    session: Session,
    viewer: web.Viewer,
    endpoint_id: int,
    *,
    new_secret: str | None = None,
) -> HTMLResponse:
    endpoint = service.get_endpoint(
        session, organization_id=viewer.organization_id, endpoint_id=endpoint_id
    )
    return render(
        request,
        viewer,
        "webhook_endpoint.html",
        {
            "active": "webhooks",
            "endpoint": endpoint,
            "deliveries": deliveries_out(session, endpoint_id=endpoint.id, limit=50),
            "new_secret": new_secret,
        },
    )


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks(request: Request, session: SessionDep, viewer: Viewer) -> HTMLResponse:
    return _list_page(request, session, viewer)


@router.post("/webhooks", response_class=HTMLResponse)
def create_endpoint(
    request: Request,
    session: SessionDep,
    viewer: AdminFormViewer,
    url: Annotated[Text, Form(max_length=2048)] = "",
    event_types: Annotated[list[Text] | None, Form()] = None,
) -> Response:
    types = [t for t in event_types or [] if t]
    try:
        endpoint, secret = service.create_endpoint(
            session,
            organization_id=viewer.organization_id,
            url=url.strip(),
            event_types=types,
            description=None,
        )
    except InvalidInput as exc:
        form: dict[str, object] = {"url": url, "event_types": types}
        return _list_page(request, session, viewer, error=exc.detail, form=form, status_code=422)
    # The secret is shown in this response only; it is stored encrypted.
    return _endpoint_page(request, session, viewer, endpoint.id, new_secret=secret)


@router.get("/webhooks/{endpoint_id}", response_class=HTMLResponse)
def endpoint_page(
    request: Request, session: SessionDep, viewer: Viewer, endpoint_id: DbId
) -> HTMLResponse:
    return _endpoint_page(request, session, viewer, endpoint_id)


@router.post("/webhooks/{endpoint_id}/rotate", response_class=HTMLResponse)
def rotate_secret(
    request: Request, session: SessionDep, viewer: AdminFormViewer, endpoint_id: DbId
) -> Response:
    endpoint = service.get_endpoint(
        session, organization_id=viewer.organization_id, endpoint_id=endpoint_id
    )
    _, secret = service.rotate_secret(session, endpoint=endpoint, overlap=timedelta(hours=24))
    return _endpoint_page(request, session, viewer, endpoint_id, new_secret=secret)


@router.post("/webhooks/{endpoint_id}/enable")
def enable_endpoint(session: SessionDep, viewer: AdminFormViewer, endpoint_id: DbId) -> Response:
    endpoint = service.get_endpoint(
        session, organization_id=viewer.organization_id, endpoint_id=endpoint_id
    )
    service.update_endpoint(session, endpoint=endpoint, enabled=not endpoint.enabled)
    state = "enabled" if endpoint.enabled else "disabled"
    return redirect(f"/dashboard/webhooks/{endpoint_id}", flash=("ok", f"Endpoint {state}."))


@router.post("/webhooks/{endpoint_id}/delete")
def delete_endpoint(session: SessionDep, viewer: AdminFormViewer, endpoint_id: DbId) -> Response:
    endpoint = service.get_endpoint(
        session, organization_id=viewer.organization_id, endpoint_id=endpoint_id
    )
    service.delete_endpoint(session, endpoint=endpoint)
    return redirect("/dashboard/webhooks", flash=("ok", "Endpoint removed."))


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay")
def replay_delivery(
    session: SessionDep, viewer: AdminFormViewer, endpoint_id: DbId, delivery_id: DbId
) -> Response:
    endpoint = service.get_endpoint(
        session, organization_id=viewer.organization_id, endpoint_id=endpoint_id
    )
    service.replay_delivery(session, endpoint=endpoint, delivery_id=delivery_id)
    return redirect(
        f"/dashboard/webhooks/{endpoint_id}", flash=("ok", "The event is queued to be sent again.")
    )
