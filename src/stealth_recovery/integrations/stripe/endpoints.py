"""Stripe routes: the connection (admin) and the signed webhook.

Checkout's return page is the customer's, in `paylink.pages`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status

from stealth_recovery.auth.deps import AdminPrincipal, CurrentPrincipal
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.settings import get_settings
from stealth_recovery.integrations.stripe import service, webhooks
from stealth_recovery.integrations.stripe.schemas import (
    HANDLED_EVENTS,
    StripeConnectionIn,
    StripeConnectionOut,
    WebhookAck,
)
from stealth_recovery.organizations.models import Organization

router = APIRouter(tags=["stripe"])

_ERR_401: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, invalid or expired credentials"}
}
_ERR_403: dict[int | str, dict[str, Any]] = {
    403: {"description": "the caller's role may not do this"}
}
_ERR_404: dict[int | str, dict[str, Any]] = {404: {"description": "Stripe is not connected"}}


def _out(session: SessionDep, view: service.ConnectionView) -> StripeConnectionOut:
    organization = session.get(Organization, view.connection.organization_id)
    assert organization is not None
    return StripeConnectionOut(
        mode=view.mode,
        secret_key=view.secret_key,
        webhook_secret=view.webhook_secret,
        webhook_url=get_settings().external_url(f"/v1/webhooks/stripe/{organization.slug}"),
        enabled_events=list(HANDLED_EVENTS),
        created_at=view.connection.created_at,
        updated_at=view.connection.updated_at,
    )


@router.put(
    "/v1/integrations/stripe",
    response_model=StripeConnectionOut,
    responses={**_ERR_401, **_ERR_403, 422: {"description": "a key of the wrong shape"}},
)
def put_connection(
    body: StripeConnectionIn, principal: AdminPrincipal, session: SessionDep
) -> StripeConnectionOut:
    """Connect Stripe, or replace the keys (admin). The secrets are stored encrypted and are
    never returned; register `webhook_url` in Stripe for the `enabled_events`."""
    view = service.save_connection(
        session,
        organization_id=principal.organization_id,
        secret_key=body.secret_key,
        webhook_secret=body.webhook_secret,
    )
    return _out(session, view)


@router.get(
    "/v1/integrations/stripe",
    response_model=StripeConnectionOut,
    responses={**_ERR_401, **_ERR_404},
)
def get_connection(principal: CurrentPrincipal, session: SessionDep) -> StripeConnectionOut:
    """The organization's Stripe connection, with its secrets masked."""
    return _out(session, service.get_connection(session, organization_id=principal.organization_id))


@router.delete(
    "/v1/integrations/stripe",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_ERR_401, **_ERR_403, **_ERR_404},
)
def delete_connection(principal: AdminPrincipal, session: SessionDep) -> Response:
    """Disconnect Stripe (admin): the keys are deleted; webhooks are refused from then on."""
    service.delete_connection(session, organization_id=principal.organization_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _raw_body(request: Request) -> bytes:
    # The signature covers the exact bytes Stripe sent, so the body is read unparsed.
    return await request.body()


@router.post(
    "/v1/webhooks/stripe/{org_slug}",
    response_model=WebhookAck,
    responses={
        400: {
            "description": "missing or invalid Stripe-Signature (also for an unknown "
            "organization or one without Stripe), or not an event"
        },
    },
)
def stripe_webhook(
    org_slug: str,
    session: SessionDep,
    payload: Annotated[bytes, Depends(_raw_body)],
    stripe_signature: Annotated[str | None, Header()] = None,
) -> WebhookAck:
    """Stripe's events for one organization, verified with its signing secret.

    Each event is acted on once per organization; a replay answers 200 with `outcome:
    duplicate`. An unknown organization answers exactly like a bad signature.
    """
    event_id, outcome = webhooks.receive(
        session, org_slug=org_slug, payload=payload, signature=stripe_signature
    )
    return WebhookAck(event_id=event_id, outcome=outcome.value)
