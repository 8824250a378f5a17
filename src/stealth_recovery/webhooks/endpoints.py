"""/v1/webhook-endpoints: endpoints (secret shown once, rotation), their delivery log, replay."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from sqlalchemy.orm import Session

from stealth_recovery.auth.deps import AdminOrApiKeyPrincipal, CurrentPrincipal
from stealth_recovery.auth.idempotency import IdempotentRoute
from stealth_recovery.core.api import DbId, error_responses
from stealth_recovery.core.database import SessionDep
from stealth_recovery.webhooks import repository, service
from stealth_recovery.webhooks.models import WebhookEndpoint
from stealth_recovery.webhooks.schemas import (
    AttemptOut,
    DeliveryOut,
    EndpointCreate,
    EndpointOut,
    EndpointUpdate,
    EndpointWithSecret,
    RotateSecret,
)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"], route_class=IdempotentRoute)
EndpointId = Annotated[DbId, Path(description="the webhook endpoint's id")]


def endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut.model_validate(endpoint, from_attributes=True)


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> EndpointWithSecret:
    return EndpointWithSecret(**endpoint_out(endpoint).model_dump(), secret=secret)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EndpointWithSecret,
    responses=error_responses(401, 403, 422),
)
def create_endpoint(
    body: EndpointCreate, principal: AdminOrApiKeyPrincipal, session: SessionDep
) -> EndpointWithSecret:
    """Add an endpoint (admin or API key). The answer shows its signing secret, this once.

    The URL must be https (http is accepted outside production) and must not resolve to a
    loopback, private, link-local or metadata address.
    """
    endpoint, secret = service.create_endpoint(
        session,
        organization_id=principal.organization_id,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
    )
    return _with_secret(endpoint, secret)


@router.get("", response_model=list[EndpointOut], responses=error_responses(401))
def list_endpoints(principal: CurrentPrincipal, session: SessionDep) -> list[EndpointOut]:
    """The organization's endpoints (secrets are never shown again)."""
    return [
        endpoint_out(e)
        for e in repository.list_endpoints(session, organization_id=principal.organization_id)
    ]


def _endpoint(session: Session, principal: CurrentPrincipal, endpoint_id: int) -> WebhookEndpoint:
    return service.get_endpoint(
        session, organization_id=principal.organization_id, endpoint_id=endpoint_id
    )


@router.get("/{endpoint_id}", response_model=EndpointOut, responses=error_responses(401, 404, 422))
def get_endpoint(
    endpoint_id: EndpointId, principal: CurrentPrincipal, session: SessionDep
) -> EndpointOut:
    """One endpoint; `disabled_reason` says why it was disabled, if it was."""
    return endpoint_out(_endpoint(session, principal, endpoint_id))


@router.patch(
    "/{endpoint_id}", response_model=EndpointOut, responses=error_responses(401, 403, 404, 422)
)
def update_endpoint(
    endpoint_id: EndpointId,
    body: EndpointUpdate,
    principal: AdminOrApiKeyPrincipal,
    session: SessionDep,
) -> EndpointOut:
    """Change the URL, the event types, the description, or enable/disable the endpoint.

    Enabling an endpoint that was disabled for failing sends what waited meanwhile.
    """
    endpoint = service.update_endpoint(
        session,
        endpoint=_endpoint(session, principal, endpoint_id),
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
    )
    return endpoint_out(endpoint)


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 403, 404, 422),
)
def delete_endpoint(
    endpoint_id: EndpointId, principal: AdminOrApiKeyPrincipal, session: SessionDep
) -> Response:
    """Remove the endpoint and its delivery log."""
    service.delete_endpoint(session, endpoint=_endpoint(session, principal, endpoint_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=EndpointWithSecret,
    responses=error_responses(401, 403, 404, 422),
)
def rotate_secret(
    endpoint_id: EndpointId,
    body: RotateSecret,
    principal: AdminOrApiKeyPrincipal,
    session: SessionDep,
) -> EndpointWithSecret:
    """A new signing secret, shown this once. For `overlap_hours` (24 by default, at most 168)
    every message carries two signatures, one per secret, so receivers can switch at leisure."""
    endpoint, secret = service.rotate_secret(
        session,
        endpoint=_endpoint(session, principal, endpoint_id),
        overlap=timedelta(hours=body.overlap_hours),
    )
    return _with_secret(endpoint, secret)


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=list[DeliveryOut],
    responses=error_responses(401, 404, 422),
)
def list_deliveries(
    endpoint_id: EndpointId,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[DbId | None, Query(description="deliveries older than this id")] = None,
) -> list[DeliveryOut]:
    """The endpoint's delivery log, newest first: each try's status, latency and the start of
    the answer."""
    endpoint = _endpoint(session, principal, endpoint_id)
    return deliveries_out(session, endpoint_id=endpoint.id, limit=limit, before_id=before_id)


def deliveries_out(
    session: Session, *, endpoint_id: int, limit: int, before_id: int | None = None
) -> list[DeliveryOut]:
    rows = repository.deliveries_of(
        session, endpoint_id=endpoint_id, limit=limit, before_id=before_id
    )
    attempts = repository.attempts_of(session, delivery_ids=[d.id for d, _ in rows])
    return [
        DeliveryOut(
            id=delivery.id,
            event_id=event.public_id,
            event_type=event.type,
            status=delivery.status,
            tries=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            delivered_at=delivery.delivered_at,
            replay=delivery.replay,
            created_at=delivery.created_at,
            attempts=[
                AttemptOut.model_validate(a, from_attributes=True) for a in attempts[delivery.id]
            ],
        )
        for delivery, event in rows
    ]


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    responses=error_responses(401, 403, 404, 422),
)
def replay_delivery(
    endpoint_id: EndpointId,
    delivery_id: Annotated[DbId, Path(description="the delivery to send again")],
    principal: AdminOrApiKeyPrincipal,
    session: SessionDep,
) -> DeliveryOut:
    """Send the delivery's event to the endpoint again, as a new delivery with the same event
    id (a receiver that already processed it recognises it)."""
    endpoint = _endpoint(session, principal, endpoint_id)
    replay = service.replay_delivery(session, endpoint=endpoint, delivery_id=delivery_id)
    [out] = deliveries_out(session, endpoint_id=endpoint.id, limit=1, before_id=replay.id + 1)
    return out
