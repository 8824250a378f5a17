"""The organization's Stripe connection, and Checkout Sessions for pay links. Flushes only."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import stripe
import structlog
from sqlalchemy.orm import Session

from stealth_recovery.core.database import end_idle_transaction
from stealth_recovery.core.errors import Conflict, DomainError, InvalidInput, NotFound
from stealth_recovery.core.security import decrypt_secret, encrypt_secret, reencrypt_secret
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.integrations.models import StripeConnection
from stealth_recovery.integrations.stripe import repository
from stealth_recovery.integrations.stripe.currencies import to_stripe
from stealth_recovery.organizations.models import Organization
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery import repository as attempts_repository
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.errors import AttemptNotOpen
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt

log = structlog.get_logger(__name__)

_SECRET_KEY = re.compile(r"^(?P<prefix>(?:sk|rk)_(?P<mode>test|live)_)[A-Za-z0-9]{8,240}$")
_WEBHOOK_SECRET = re.compile(r"^(?P<prefix>whsec_)[A-Za-z0-9+/=_-]{8,240}$")

# Metadata we put on every Checkout Session and its payment intent, so that events about them
# find the attempt again (and are never mistaken for a new failure to recover).
METADATA_ATTEMPT_ID = "stealth_recovery_attempt_id"
METADATA_ORGANIZATION_ID = "stealth_recovery_organization_id"

_HTTP_TIMEOUT_SECONDS = 20.0
_NETWORK_RETRIES = 2


class PaymentProviderError(DomainError):
    """Stripe could not be reached or refused the request."""

    status_code = 502
    type = "payment_provider_error"


class StripeNotConnected(NotFound):
    type = "stripe_not_connected"


class CheckoutUnavailable(Conflict):
    """The pay button cannot start a Checkout: the organization has no Stripe connection."""

    type = "checkout_unavailable"


@dataclass(frozen=True)
class ConnectionView:
    """A connection as shown to the organization: never the secrets themselves."""

    mode: Literal["test", "live"]
    secret_key: str
    webhook_secret: str
    connection: StripeConnection


def _mask(prefix: str, value: str) -> str:
    return f"{prefix}…{value[-4:]}"


def _validated_secret_key(value: str) -> re.Match[str]:
    value = value.strip()
    if value.startswith("pk_"):
        raise InvalidInput(
            "secret_key", "this is a publishable key; use a secret key (sk_…) or restricted (rk_…)"
        )
    match = _SECRET_KEY.match(value)
    if match is None:
        raise InvalidInput(
            "secret_key",
            "must be a Stripe secret key (sk_test_…, sk_live_…) or restricted key (rk_test_…, "
            "rk_live_…)",
        )
    return match


def _validated_webhook_secret(value: str) -> re.Match[str]:
    match = _WEBHOOK_SECRET.match(value.strip())
    if match is None:
        raise InvalidInput(
            "webhook_secret", "must be the webhook endpoint's signing secret (whsec_…)"
        )
    return match


def view_of(connection: StripeConnection) -> ConnectionView:
    secret_key = decrypt_secret(connection.secret_key_encrypted)
    webhook_secret = decrypt_secret(connection.webhook_secret_encrypted)
    key_match = _SECRET_KEY.match(secret_key)
    assert key_match is not None, "stored keys were validated on the way in"
    mode: Literal["test", "live"] = "live" if key_match["mode"] == "live" else "test"
    return ConnectionView(
        mode=mode,
        secret_key=_mask(key_match["prefix"], secret_key),
        webhook_secret=_mask("whsec_", webhook_secret),
        connection=connection,
    )


def save_connection(
    session: Session, *, organization_id: int, secret_key: str, webhook_secret: str
) -> ConnectionView:
    """Store (or replace) the organization's Stripe keys, encrypted."""
    key = _validated_secret_key(secret_key).group(0)
    whsec = _validated_webhook_secret(webhook_secret).group(0)
    connection = repository.get_connection(session, organization_id=organization_id)
    if connection is None:
        connection = StripeConnection(organization_id=organization_id)
        session.add(connection)
    connection.secret_key_encrypted = encrypt_secret(key)
    connection.webhook_secret_encrypted = encrypt_secret(whsec)
    connection.secret_key_last4 = key[-4:]
    connection.updated_at = utc_now()
    session.flush()
    log.info("stripe_connection_saved", organization_id=organization_id)
    return view_of(connection)


def get_connection(session: Session, *, organization_id: int) -> ConnectionView:
    """The organization's connection, masked; 404 when Stripe is not connected."""
    connection = repository.get_connection(session, organization_id=organization_id)
    if connection is None:
        raise StripeNotConnected("Stripe is not connected")
    return view_of(connection)


def delete_connection(session: Session, *, organization_id: int) -> None:
    """Forget the organization's Stripe keys; 404 when there are none."""
    connection = repository.get_connection(session, organization_id=organization_id)
    if connection is None:
        raise StripeNotConnected("Stripe is not connected")
    session.delete(connection)
    session.flush()
    log.info("stripe_connection_deleted", organization_id=organization_id)


def has_connection(session: Session, *, organization_id: int) -> bool:
    """Whether the organization has stored Stripe keys (the pay page then uses Checkout)."""
    return repository.has_connection(session, organization_id=organization_id)


def reencrypt_connections(session: Session) -> int:
    """Re-encrypt every organization's stored Stripe keys with the current SECRET_KEY.

    The second half of a key rotation: run with the old key as SECRET_KEY_PREVIOUS, after which
    the old key can be dropped. Returns how many connections were rewritten; raises RuntimeError
    (nothing is written) when a stored key decrypts with neither key.
    """
    count = 0
    for connection in repository.all_connections(session):
        connection.secret_key_encrypted = reencrypt_secret(connection.secret_key_encrypted)
        connection.webhook_secret_encrypted = reencrypt_secret(connection.webhook_secret_encrypted)
        count += 1
    session.flush()
    return count


def webhook_secret_of(connection: StripeConnection) -> str:
    return decrypt_secret(connection.webhook_secret_encrypted)


_http_client: stripe.HTTPClient | None = None
_http_client_lock = threading.Lock()


def _shared_http_client() -> stripe.HTTPClient:
    # One connection pool per process; the API key and base URL travel with each StripeClient.
    global _http_client
    with _http_client_lock:
        if _http_client is None:
            _http_client = stripe.HTTPXClient(
                timeout=_HTTP_TIMEOUT_SECONDS, allow_sync_methods=True
            )
        return _http_client


def client_for(connection: StripeConnection) -> stripe.StripeClient:
    """A Stripe API client with the organization's key, at the configured base URL."""
    return stripe.StripeClient(
        decrypt_secret(connection.secret_key_encrypted),
        base_addresses={"api": get_settings().stripe_api_base},
        http_client=_shared_http_client(),
        max_network_retries=_NETWORK_RETRIES,
    )


@dataclass(frozen=True)
class InvoiceLink:
    """One invoice and the payment intent that pays it, as Stripe's invoice payments say."""

    invoice_id: str
    payment_intent_id: str


def find_invoice_link(
    session: Session,
    *,
    organization_id: int,
    invoice_id: str | None = None,
    payment_intent_id: str | None = None,
) -> InvoiceLink | None:
    """Ask Stripe which invoice a payment intent pays, or which payment intent pays an invoice.

    API versions from 2025-03-31.basil leave `invoice.payment_intent` and
    `payment_intent.invoice` out; the link lives in invoice payments (`GET /v1/invoice_payments`
    with `invoice`, or with `payment[type]=payment_intent&payment[payment_intent]`). The
    invoice's default payment wins when there are several. None when Stripe knows no link, or
    cannot be asked (no key, an error: logged, and the next event about the payment asks again).
    """
    if not invoice_id and not payment_intent_id:
        return None
    connection = repository.get_connection(session, organization_id=organization_id)
    if connection is None:
        return None
    params: dict[str, Any] = {"limit": 10}
    if invoice_id:
        params["invoice"] = invoice_id
    else:
        params["payment"] = {"type": "payment_intent", "payment_intent": payment_intent_id}
    try:
        page = client_for(connection).v1.invoice_payments.list(params=params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        log.warning(
            "stripe_invoice_link_unknown",
            organization_id=organization_id,
            error=type(exc).__name__,
            http_status=exc.http_status,
            request_id=exc.request_id,
        )
        return None
    found: list[InvoiceLink] = []
    for entry in page.to_dict().get("data") or []:
        payment = entry.get("payment") or {}
        pi = payment.get("payment_intent")
        pi_id = pi.get("id") if isinstance(pi, dict) else pi
        invoice = entry.get("invoice")
        in_id = invoice.get("id") if isinstance(invoice, dict) else invoice
        if isinstance(pi_id, str) and isinstance(in_id, str):
            link = InvoiceLink(invoice_id=in_id, payment_intent_id=pi_id)
            if entry.get("is_default"):
                return link
            found.append(link)
    return found[0] if found else None


def _log_stripe_error(exc: stripe.StripeError, *, attempt_id: int) -> None:
    log.warning(
        "stripe_request_failed",
        attempt_id=attempt_id,
        error=type(exc).__name__,
        http_status=exc.http_status,
        code=exc.code,
        request_id=exc.request_id,
    )


def _provider_error(exc: stripe.StripeError, *, attempt_id: int) -> PaymentProviderError:
    _log_stripe_error(exc, attempt_id=attempt_id)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return PaymentProviderError("Stripe refused the merchant's API key")
    if isinstance(exc, stripe.APIConnectionError):
        return PaymentProviderError("Stripe could not be reached; try again in a moment")
    return PaymentProviderError(f"Stripe refused the checkout: {exc.user_message or exc.code}")


def success_url(attempt: RecoveryAttempt) -> str:
    return recovery_service.pay_url(attempt) + "/success"


def _checkout_params(session: Session, attempt: RecoveryAttempt) -> dict[str, Any]:
    transaction = session.get(Transaction, attempt.transaction_id)
    organization = session.get(Organization, attempt.organization_id)
    assert transaction is not None and organization is not None
    metadata = {
        METADATA_ATTEMPT_ID: str(attempt.id),
        METADATA_ORGANIZATION_ID: str(attempt.organization_id),
    }
    product: dict[str, Any] = {"name": f"Payment to {organization.name}"}
    if transaction.description:
        product["description"] = transaction.description
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": transaction.currency.lower(),
                    # Stripe's units, not ISO's (zero-decimal, ISK, UGX, …).
                    "unit_amount": to_stripe(transaction.amount_minor, transaction.currency),
                    "product_data": product,
                },
            }
        ],
        "client_reference_id": f"attempt_{attempt.id}",
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        # Stripe fills in the session id; the success page checks it with Stripe.
        "success_url": success_url(attempt) + "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": recovery_service.pay_url(attempt),
    }
    if transaction.customer_email:
        params["customer_email"] = transaction.customer_email
    return params


def checkout_url_for(session: Session, *, attempt: RecoveryAttempt) -> str:
    """Where to send the customer to pay.

    A failed Stripe invoice is paid through the invoice itself — its hosted invoice page — so
    the payment settles that invoice and Stripe's own retries cannot collect it a second time.
    Any other failure pays through a Checkout Session: the attempt's open one, or a new one. A
    session that is already complete sends the customer to our success page (which confirms with
    Stripe) instead of opening a second payment for the same debt.
    """
    if not attempt.is_open:
        raise AttemptNotOpen(f"attempt is already {attempt.status}")
    connection = repository.get_connection(session, organization_id=attempt.organization_id)
    if connection is None:
        raise CheckoutUnavailable("Stripe is not connected for this organization")
    client = client_for(connection)
    transaction = session.get(Transaction, attempt.transaction_id)
    assert transaction is not None
    params = _checkout_params(session, attempt)
    # Stripe may take seconds to answer: no write lock (SQLite's is the whole database) held.
    end_idle_transaction(session)
    if transaction.psp_invoice_id:
        return _invoice_pay_url(
            session, client, attempt=attempt, invoice_id=transaction.psp_invoice_id
        )
    previous = attempt.checkout_session_id
    if previous:
        try:
            existing = client.v1.checkout.sessions.retrieve(previous)
        except stripe.InvalidRequestError as exc:
            # Not found on this account (the merchant changed keys): open a fresh one.
            if exc.http_status != 404:
                raise _provider_error(exc, attempt_id=attempt.id) from exc
        except stripe.StripeError as exc:
            raise _provider_error(exc, attempt_id=attempt.id) from exc
        else:
            if existing.status == "open" and existing.url:
                return str(existing.url)
            if existing.status == "complete":
                return success_url(attempt) + f"?session_id={existing.id}"
    try:
        created = client.v1.checkout.sessions.create(
            params=params,  # type: ignore[arg-type]
            # Two clicks (or a retry after our commit failed) get the same session back.
            options={"idempotency_key": f"sr-checkout-{attempt.id}-{previous or 'first'}"},
        )
    except stripe.StripeError as exc:
        raise _provider_error(exc, attempt_id=attempt.id) from exc
    attempt.checkout_session_id = created.id
    session.flush()
    log.info("stripe_checkout_created", attempt_id=attempt.id, checkout_session_id=created.id)
    return str(created.url)


# Invoice statuses (Stripe's API reference, "The Invoice object"): what the pay button does.
_INVOICE_ENDED = {
    "void": "invoice voided in Stripe",
    "uncollectible": "invoice marked uncollectible in Stripe",
}


def _invoice_pay_url(
    session: Session, client: stripe.StripeClient, *, attempt: RecoveryAttempt, invoice_id: str
) -> str:
    """The invoice's `hosted_invoice_url` while it is `open`; when it was paid or ended in the
    meantime, the attempt follows (completed, or cancelled with the reason) and the customer
    goes to the return page, which says so."""
    try:
        invoice = client.v1.invoices.retrieve(invoice_id)
    except stripe.StripeError as exc:
        # Never fall back to a separate payment: Stripe could still collect the invoice too.
        raise _provider_error(exc, attempt_id=attempt.id) from exc
    if invoice.status == "open" and invoice.hosted_invoice_url:
        log.info("stripe_invoice_page_used", attempt_id=attempt.id, invoice_id=invoice_id)
        return str(invoice.hosted_invoice_url)
    if invoice.status == "paid":
        recovery_service.complete_attempt(
            session, attempt=attempt, paid_via=recovery_service.PaidVia.DEBT
        )
    elif invoice.status in _INVOICE_ENDED:
        recovery_service.stop_attempt(
            session, attempt=attempt, reason=_INVOICE_ENDED[invoice.status]
        )
    else:
        raise PaymentProviderError(f"the Stripe invoice is {invoice.status}, not payable")
    return success_url(attempt)


class CheckoutState(StrEnum):
    paid = "paid"
    pending = "pending"


def confirm_checkout(session: Session, *, attempt: RecoveryAttempt) -> CheckoutState:
    """Ask Stripe whether the attempt's Checkout Session is paid, and record the payment if so.

    The success redirect alone proves nothing (anyone can open the URL): only Stripe's answer,
    or the signed webhook, completes an attempt. A session paid after the attempt ended still
    records the payment (`recovery.service.record_payment`).
    """
    if attempt.status == AttemptStatus.completed:
        return CheckoutState.paid
    if not attempt.checkout_session_id:
        return CheckoutState.pending
    connection = repository.get_connection(session, organization_id=attempt.organization_id)
    if connection is None:
        return CheckoutState.pending
    # No write lock held while Stripe answers; the payment is then recorded by conditional
    # updates, whatever a webhook recorded meanwhile.
    end_idle_transaction(session)
    try:
        checkout = client_for(connection).v1.checkout.sessions.retrieve(attempt.checkout_session_id)
    except stripe.StripeError as exc:
        # The customer sees "being confirmed"; the webhook completes the attempt meanwhile.
        _log_stripe_error(exc, attempt_id=attempt.id)
        return CheckoutState.pending
    data = checkout.to_dict()
    metadata: dict[str, Any] = data.get("metadata") or {}
    if metadata.get(METADATA_ATTEMPT_ID) != str(attempt.id):
        log.warning("stripe_checkout_metadata_mismatch", attempt_id=attempt.id)
        return CheckoutState.pending
    if checkout.payment_status != "paid":
        return CheckoutState.pending
    payment = data.get("payment_intent")
    payment_id = payment.get("id") if isinstance(payment, dict) else payment
    paid_via = recovery_service.PaidVia.checkout(payment_id or checkout.id)
    result = recovery_service.record_payment(session, attempt=attempt, paid_via=paid_via)
    mark_checkout_closed(session, attempt=attempt)
    log.info("attempt_paid_by_checkout_check", attempt_id=attempt.id, result=result.value)
    return CheckoutState.paid


def mark_checkout_closed(session: Session, *, attempt: RecoveryAttempt) -> None:
    """The attempt's session can take no more money (paid, expired): nothing to expire."""
    if attempt.checkout_session_id and attempt.checkout_closed_at is None:
        attempt.checkout_closed_at = utc_now()
        session.flush()


def close_checkout(session: Session, *, attempt: RecoveryAttempt) -> bool:
    """Expire the ended attempt's Checkout Session at Stripe (`POST
    /v1/checkout/sessions/{id}/expire`), so an old link cannot take money for a closed debt.

    True when the session is closed now (expired, or Stripe says it is not open: complete or
    already expired, or unknown to the account). False when Stripe could not be asked; the
    sweeper (`close_ended_checkouts`) tries again. Open attempts are left alone.
    """
    if attempt.is_open or not attempt.checkout_session_id or attempt.checkout_closed_at:
        return attempt.checkout_closed_at is not None
    connection = repository.get_connection(session, organization_id=attempt.organization_id)
    if connection is not None:
        try:
            client_for(connection).v1.checkout.sessions.expire(attempt.checkout_session_id)
        except stripe.InvalidRequestError as exc:
            # 400: not open any more (complete or expired); 404: not on this account's keys.
            log.info("stripe_checkout_not_open", attempt_id=attempt.id, http_status=exc.http_status)
        except stripe.StripeError as exc:
            _log_stripe_error(exc, attempt_id=attempt.id)
            return False
        else:
            log.info("stripe_checkout_expired", attempt_id=attempt.id)
    # Without a connection no one can pay through it either: the keys are gone.
    mark_checkout_closed(session, attempt=attempt)
    return True


def close_ended_checkouts(session: Session, *, limit: int = 50) -> int:
    """Expire at Stripe the Checkout Sessions of attempts that ended by any route (operator
    cancel, expiry, retries exhausted, …); returns how many were closed. Run periodically."""
    closed = 0
    for attempt in attempts_repository.ended_with_open_checkout(session, limit=limit):
        if close_checkout(session, attempt=attempt):
            closed += 1
    return closed
