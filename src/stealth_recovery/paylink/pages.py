"""The customer's pages: the pay page `/pay/{token}`, its pay action, and Checkout's return
page `/pay/{token}/success`. Plain HTML, no JavaScript; one rate limit for all of them."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from stealth_recovery.core.database import SessionDep, WriteSessionDep
from stealth_recovery.core.errors import DomainError, RateLimited
from stealth_recovery.core.money import format_minor
from stealth_recovery.integrations.stripe import service as stripe_service
from stealth_recovery.integrations.stripe.currencies import UnchargeableAmount
from stealth_recovery.organizations.models import Organization
from stealth_recovery.paylink.deps import limit_token_lookups
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery import repository, service
from stealth_recovery.recovery.errors import (
    PayLinkCancelled,
    PayLinkExpired,
    PayLinkNotFound,
    PayLinkPaid,
)
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt
from stealth_recovery.recovery.presenters import pay_page
from stealth_recovery.recovery.service import attempt_by_token

log = structlog.get_logger(__name__)

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


class PayPageRoute(APIRoute):
    """The rate limit's refusal is a page asking to wait, not the API's JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RateLimited as exc:
                response = _message(
                    request,
                    429,
                    "Too many tries",
                    "This address opened too many payment links in a short time. "
                    "Please wait a minute and try again.",
                )
                response.headers["Retry-After"] = str(max(1, round(exc.retry_after or 60)))
                return response

        return route


router = APIRouter(
    tags=["pay page"], route_class=PayPageRoute, dependencies=[Depends(limit_token_lookups)]
)

Token = Annotated[str, PathParam(max_length=200, description="the pay link's token")]

_HTML = {"content": {"text/html": {"example": "<!doctype html>…"}}}
_PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown link: a page that says so", **_HTML},
    410: {"description": "expired, paid or cancelled: a page that says so", **_HTML},
    429: {"description": "too many lookups from this address: a page asking to wait", **_HTML},
}


def _payment_mode(session: Session, attempt: RecoveryAttempt) -> str:
    """`stripe` (Checkout), `test` (no money moves) or `unavailable` (no way to pay online)."""
    if stripe_service.has_connection(session, organization_id=attempt.organization_id):
        return "stripe"
    organization = session.get(Organization, attempt.organization_id)
    if organization is not None and service.allows_test_payments(organization):
        return "test"
    return "unavailable"


def _render(request: Request, name: str, status_code: int, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    # Pay links are personal: no shared cache may keep the page.
    response.headers["Cache-Control"] = "no-store"
    return response


def _message(
    request: Request, status_code: int, heading: str, text: str, **context: Any
) -> HTMLResponse:
    return _render(request, "message.html", status_code, heading=heading, text=text, **context)


def _merchant_of(session: Session, token: str) -> str | None:
    attempt = repository.get_by_token(session, token)
    if attempt is None:
        return None
    organization = session.get(Organization, attempt.organization_id)
    return organization.name if organization else None


def _lookup(request: Request, session: Session, token: str) -> RecoveryAttempt | HTMLResponse:
    """The open attempt behind the link, or the page that explains why there is none."""
    try:
        return attempt_by_token(session, token)
    except PayLinkNotFound:
        return _message(
            request,
            404,
            "Payment link not found",
            "This payment link does not exist. Please check that you opened the whole link "
            "from your message.",
        )
    except PayLinkPaid:
        merchant = _merchant_of(session, token)
        paid = repository.get_by_token(session, token)
        if paid is not None and paid.test_payment:
            return _message(
                request,
                410,
                "A test payment was recorded for this link",
                "No money was moved, and there is nothing more to do.",
                merchant_name=merchant,
            )
        return _message(
            request,
            410,
            "This payment has already been made",
            "Thank you — there is nothing more to do.",
            merchant_name=merchant,
        )
    except PayLinkCancelled:
        merchant = _merchant_of(session, token)
        return _message(
            request,
            410,
            "This payment link has been cancelled",
            f"{merchant or 'The merchant'} cancelled it, so it can no longer be used to pay. "
            f"If you still want to pay, {_contact(merchant)}.",
            merchant_name=merchant,
        )
    except PayLinkExpired:
        merchant = _merchant_of(session, token)
        return _message(
            request,
            410,
            "This payment link has expired",
            f"It can no longer be used to pay. If you still want to pay, {_contact(merchant)}.",
            merchant_name=merchant,
        )


def _contact(merchant: str | None) -> str:
    return f"please contact {merchant}" if merchant else "please contact the merchant"


@router.get(
    "/pay/{token}",
    response_class=HTMLResponse,
    responses={200: {"description": "the pay page", **_HTML}, **_PAGE_RESPONSES},
)
def pay(token: Token, request: Request, session: WriteSessionDep) -> Response:
    """The customer's pay page: merchant, amount, what happened, and a pay button.

    The first opening marks the attempt `opened`. Limited per client address.
    """
    found = _lookup(request, session, token)
    if isinstance(found, HTMLResponse):
        return found
    service.mark_opened(session, attempt=found)
    return pay_page_response(request, session, found)


def pay_page_response(
    request: Request, session: Session, attempt: RecoveryAttempt, *, preview: bool = False
) -> HTMLResponse:
    """The pay page of an open attempt, as its customer sees it.

    `preview=True` is the operators' view from the dashboard: a banner says so, and the pay
    button is shown but disabled. Recording the opening is the caller's business.
    """
    page = pay_page(session, attempt)
    return _render(
        request,
        "pay.html",
        200,
        view=page.view,
        expires_display=page.expires_display,
        lang=page.view.locale.replace("_", "-"),
        preview=preview,
        payment_mode=_payment_mode(session, attempt),
    )


@router.post(
    "/pay/{token}/pay",
    response_class=HTMLResponse,
    responses={
        200: {"description": "a test payment (TEST_PAYMENTS or a demo organization)", **_HTML},
        303: {"description": "redirect to the merchant's Stripe Checkout"},
        409: {
            "description": "online payment is not set up for this merchant, or the provider "
            "cannot charge this exact amount",
            **_HTML,
        },
        502: {"description": "the payment provider could not start the payment", **_HTML},
        **_PAGE_RESPONSES,
    },
)
def pay_action(token: Token, request: Request, session: SessionDep) -> Response:
    """The pay button: on to Stripe Checkout when the merchant connected Stripe.

    Without Stripe, a test payment when TEST_PAYMENTS is set or the organization is the demo's
    (completed at once, no money moved, never counted as recovered); otherwise a page saying
    online payment is not set up. An amount Stripe cannot charge exactly (its documented
    currency rules, e.g. KWD in multiples of 10 fils) gets a page saying so, not a retry hint.
    """
    found = _lookup(request, session, token)
    if isinstance(found, HTMLResponse):
        return found
    attempt = found
    page = pay_page(session, attempt)
    view = page.view
    common = {
        "merchant_name": view.merchant_name,
        "lang": view.locale.replace("_", "-"),
    }
    mode = _payment_mode(session, attempt)
    if mode == "stripe":
        try:
            url = stripe_service.checkout_url_for(session, attempt=attempt)
        except UnchargeableAmount as exc:
            # Stripe's own rule (e.g. KWD in multiples of 10 fils): retrying will not help.
            log.warning("amount_not_payable_online", attempt_id=attempt.id, rule=str(exc))
            return _message(
                request,
                409,
                "This amount cannot be paid online",
                f"The payment provider cannot charge exactly {view.amount_display} online. "
                f"Please contact {view.merchant_name} to pay.",
                amount_display=view.amount_display,
                **common,
            )
        except DomainError as exc:
            log.warning("checkout_not_started", attempt_id=attempt.id, status=exc.status_code)
            return _message(
                request,
                exc.status_code if exc.status_code >= 500 else 409,
                "The payment could not be started",
                "The payment provider did not answer as expected. Please try again in a moment.",
                **common,
            )
        return RedirectResponse(url, status_code=303)
    if mode == "test":
        service.complete_attempt(
            session, attempt=attempt, paid_via=service.PaidVia.TEST_PAYMENT, test_payment=True
        )
        log.info("test_payment_completed", attempt_id=attempt.id)
        return _message(
            request,
            200,
            "Test payment recorded",
            f"This was a test payment of {view.amount_display} to {view.merchant_name}: "
            "no money was moved. No more reminders will be sent about it.",
            amount_display=view.amount_display,
            hint="Test payment — no money was moved.",
            **common,
        )
    return _message(
        request,
        409,
        "Online payment is not set up",
        f"{view.merchant_name} has not set up online payment for this link. "
        "Please contact them to pay.",
        amount_display=view.amount_display,
        **common,
    )


_RETURN_HEADINGS = {
    "paid": "Thank you — your payment was received",
    "pending": "We are confirming your payment",
    "unknown": "Payment link not found",
    "ended": "This payment link is no longer valid",
}


@router.get("/pay/{token}/success", response_class=HTMLResponse, include_in_schema=False)
def checkout_return(token: str, request: Request, session: WriteSessionDep) -> HTMLResponse:
    """Where Stripe Checkout sends the customer back: paid, or still being confirmed.

    A GET that writes (it records the payment Stripe confirms), so its session is a writer's:
    on SQLite a reader's transaction cannot take the write lock once another writer committed.
    """
    attempt = repository.get_by_token(session, token)
    if attempt is None:
        return _return_page(request, "unknown", status_code=404)
    state = stripe_service.confirm_checkout(session, attempt=attempt)
    if state != stripe_service.CheckoutState.paid and attempt.status in (
        AttemptStatus.cancelled,
        AttemptStatus.expired,
    ):
        # Nothing about a closed debt (amount, merchant, customer) to whoever holds the link.
        return _return_page(request, "ended", status_code=410)
    transaction = session.get(Transaction, attempt.transaction_id)
    organization = session.get(Organization, attempt.organization_id)
    assert transaction is not None and organization is not None
    locale = transaction.customer_locale or "en"
    return _return_page(
        request,
        state.value,
        lang=locale.replace("_", "-"),
        merchant_name=organization.name,
        amount_display=format_minor(transaction.amount_minor, transaction.currency, locale),
    )


def _return_page(
    request: Request, state: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    return _render(
        request,
        "checkout_return.html",
        status_code,
        state=state,
        heading=_RETURN_HEADINGS[state],
        **context,
    )
