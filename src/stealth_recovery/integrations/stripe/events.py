"""Reading Stripe event objects: which payment they are about, and the failure they report.

Pure functions over the event's JSON (a dict), written against the shapes of Stripe's API
reference for invoices, payment intents, charges and Checkout Sessions, old and new API versions
alike (`invoice.payment_intent` and `payment_intent.invoice` disappeared in 2025-03-31.basil).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stealth_recovery.core.contacts import normalise_email, normalise_phone
from stealth_recovery.core.time import utc_now
from stealth_recovery.ingestion.service import FailureInput
from stealth_recovery.integrations.stripe.currencies import from_stripe
from stealth_recovery.integrations.stripe.service import (
    METADATA_ATTEMPT_ID,
    METADATA_ORGANIZATION_ID,
)
from stealth_recovery.payments.declines import DeclineCategory, classify_decline

GATEWAY = "stripe"


class MalformedEvent(ValueError):
    """The payload is signed but not an event we can read."""


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    created: datetime
    livemode: bool
    object: dict[str, Any]


def parse_event(payload: Any) -> StripeEvent:
    if not isinstance(payload, dict):
        raise MalformedEvent("the body is not a JSON object")
    event_id, event_type = payload.get("id"), payload.get("type")
    data = payload.get("data")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEvent("the event has no id")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("the event has no type")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEvent("the event has no data.object")
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=_created(payload.get("created")),
        livemode=bool(payload.get("livemode")),
        object=data["object"],
    )


def _created(value: Any) -> datetime:
    """The event's `created` (Unix seconds); now when it is not a number, MalformedEvent when
    the number is no date Python or the database can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return utc_now()
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedEvent("created is outside the supported date range") from None


def _id(value: Any) -> str | None:
    """An expandable field: either the id itself or the expanded object carrying it."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class PaymentRefs:
    """The Stripe ids one event ties together, and our own metadata if we made the payment."""

    object_id: str
    invoice_id: str | None
    payment_intent_id: str | None
    charge_id: str | None
    checkout_session_id: str | None
    attempt_id: int | None  # set on the Checkout Sessions (and their payment intents) we create
    organization_id: int | None
    subscription_id: str | None = None
    customer_id: str | None = None
    # The object comes from an API version that leaves the invoice <-> payment intent link out
    # (2025-03-31.basil and later): only Stripe's invoice payments can tell.
    link_missing: bool = False

    @property
    def candidates(self) -> list[str]:
        ids = [self.invoice_id, self.payment_intent_id, self.charge_id]
        return list(dict.fromkeys(i for i in ids if i))

    @property
    def external_ref(self) -> str:
        """The merchant-level payment: the invoice if there is one, else the payment intent."""
        return self.invoice_id or self.payment_intent_id or self.charge_id or self.object_id


def _invoice_payment_intent(invoice: dict[str, Any]) -> str | None:
    direct = _id(invoice.get("payment_intent"))
    if direct:
        return direct
    # Newer API versions list the invoice's payments instead (when the event expands them).
    for entry in _dict(invoice.get("payments")).get("data") or []:
        payment = _dict(_dict(entry).get("payment"))
        found = _id(payment.get("payment_intent"))
        if found:
            return found
    return None


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    # 2025-03-31.basil moved `invoice.subscription` to `parent.subscription_details`.
    return _id(invoice.get("subscription")) or _id(
        _dict(_dict(invoice.get("parent")).get("subscription_details")).get("subscription")
    )


def _int(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def refs_of(event: StripeEvent) -> PaymentRefs:
    """The ids an event's object names, in any API version's shape."""
    obj = event.object
    kind = obj.get("object")
    object_id = _id(obj.get("id")) or ""
    invoice_id = payment_intent_id = charge_id = checkout_session_id = subscription_id = None
    customer_id = _id(obj.get("customer"))
    link_missing = False
    if kind == "invoice":
        invoice_id = object_id
        payment_intent_id = _invoice_payment_intent(obj)
        charge_id = _id(obj.get("charge"))
        subscription_id = _invoice_subscription(obj)
        link_missing = payment_intent_id is None and "payment_intent" not in obj
    elif kind == "payment_intent":
        payment_intent_id = object_id
        invoice_id = _id(obj.get("invoice"))
        charge_id = _id(obj.get("latest_charge")) or _id(
            _dict(obj.get("last_payment_error")).get("charge")
        )
        link_missing = "invoice" not in obj
    elif kind == "charge":
        charge_id = object_id
        payment_intent_id = _id(obj.get("payment_intent"))
        invoice_id = _id(obj.get("invoice"))
        link_missing = payment_intent_id is not None and "invoice" not in obj
    elif kind == "invoice_payment":
        # 2025-03-31.basil: one payment of an invoice, naming both sides.
        invoice_id = _id(obj.get("invoice"))
        payment_intent_id = _id(_dict(obj.get("payment")).get("payment_intent"))
        charge_id = _id(_dict(obj.get("payment")).get("charge"))
    elif kind == "checkout.session":
        checkout_session_id = object_id
        payment_intent_id = _id(obj.get("payment_intent"))
        invoice_id = _id(obj.get("invoice"))
    elif kind == "subscription":
        subscription_id = object_id
        invoice_id = _id(obj.get("latest_invoice"))
    elif kind == "customer":
        customer_id = object_id
    metadata = _dict(obj.get("metadata"))
    return PaymentRefs(
        object_id=object_id,
        invoice_id=invoice_id,
        payment_intent_id=payment_intent_id,
        charge_id=charge_id,
        checkout_session_id=checkout_session_id,
        attempt_id=_int(metadata.get(METADATA_ATTEMPT_ID)),
        organization_id=_int(metadata.get(METADATA_ORGANIZATION_ID)),
        subscription_id=subscription_id,
        customer_id=customer_id,
        link_missing=link_missing,
    )


def debt_already_ended(obj: dict[str, Any]) -> bool:
    """The object itself says nothing is owed any more: a void or uncollectible invoice, a
    canceled payment intent (Stripe's `status` values)."""
    status = obj.get("status")
    if obj.get("object") == "invoice":
        return status in ("void", "uncollectible")
    if obj.get("object") == "payment_intent":
        return status == "canceled"
    return False


@dataclass(frozen=True)
class _Contact:
    email: str | None
    phone: str | None
    name: str | None
    country: str | None


def _contact(obj: dict[str, Any]) -> _Contact:
    """Customer details from the object, its billing details, shipping, or expanded customer."""
    error = _dict(obj.get("last_payment_error"))
    billing_sources = [
        _dict(obj.get("billing_details")),
        _dict(_dict(error.get("payment_method")).get("billing_details")),
        _dict(_dict(obj.get("payment_method_details")).get("billing_details")),
        _dict(obj.get("customer_details")),
    ]
    shipping = _dict(obj.get("shipping")) or _dict(obj.get("customer_shipping"))
    customer = _dict(obj.get("customer"))

    def first(*values: Any) -> str | None:
        for value in values:
            text = _str(value)
            if text:
                return text
        return None

    email = first(
        obj.get("customer_email"),
        obj.get("receipt_email"),
        *(b.get("email") for b in billing_sources),
        customer.get("email"),
    )
    phone = first(
        obj.get("customer_phone"),
        *(b.get("phone") for b in billing_sources),
        shipping.get("phone"),
        customer.get("phone"),
    )
    name = first(
        obj.get("customer_name"),
        *(b.get("name") for b in billing_sources),
        shipping.get("name"),
        customer.get("name"),
    )
    country = first(
        _dict(obj.get("customer_address")).get("country"),
        *(_dict(b.get("address")).get("country") for b in billing_sources),
        _dict(shipping.get("address")).get("country"),
        _dict(customer.get("address")).get("country"),
    )
    return _Contact(email=email, phone=phone, name=name, country=country)


def _usable_email(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalise_email(value)
    except ValueError:
        return None


def _usable_phone(value: str | None, country: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalise_phone(value, country)
    except ValueError:
        return None


@dataclass(frozen=True)
class Decline:
    code: str | None
    category: DeclineCategory
    reason: str | None


def decline_of(obj: dict[str, Any]) -> Decline:
    """The decline code and its category: `last_payment_error` for payment intents, the
    `outcome` and `failure_code` for charges. Invoices carry none (their payment intent does).
    """
    error = _dict(obj.get("last_payment_error"))
    outcome = _dict(obj.get("outcome"))
    code = (
        _str(error.get("decline_code"))
        or _str(error.get("code"))
        or (_str(outcome.get("reason")) if outcome.get("type") != "authorized" else None)
        or _str(obj.get("failure_code"))
    )
    reason = (
        _str(error.get("message"))
        or _str(obj.get("failure_message"))
        or _str(outcome.get("seller_message"))
        or _str(_dict(obj.get("last_finalization_error")).get("message"))
    )
    code = code.lower() if code else None
    category = classify_decline(code)
    # Radar's default block rule: Stripe judged the payment fraudulent, so no reminders.
    if outcome.get("type") == "blocked" and outcome.get("reason") == "highest_risk_level":
        category = DeclineCategory.hard
    return Decline(code=code, category=category, reason=reason)


def _stripe_amount(obj: dict[str, Any]) -> int:
    if obj.get("object") == "invoice":
        for name in ("amount_remaining", "amount_due", "total"):
            value = obj.get(name)
            if isinstance(value, int) and value > 0:
                return value
        return 0
    value = obj.get("amount")
    return value if isinstance(value, int) else 0


def _amount_minor(obj: dict[str, Any], currency: str | None) -> int:
    """The amount owed in ISO 4217 minor units (Stripe's units converted; 0 if unreadable)."""
    amount = _stripe_amount(obj)
    if not amount or not currency:
        return amount
    try:
        return from_stripe(amount, currency)
    except (KeyError, ValueError):
        return amount  # an unknown currency: `record_failure` refuses it by name


def failure_input(event: StripeEvent, refs: PaymentRefs, *, external_ref: str) -> FailureInput:
    """The failed payment an event reports, in the shape `ingestion.service.record_failure` takes.

    The idempotency key is the object's id: Stripe's repeated events about one object (a retried
    delivery, a second event type) record one failure.
    """
    obj = event.object
    contact = _contact(obj)
    decline = decline_of(obj)
    return FailureInput(
        external_ref=external_ref,
        amount_minor=_amount_minor(obj, _str(obj.get("currency"))),
        currency=_str(obj.get("currency")) or "",
        customer_email=_usable_email(contact.email),
        customer_phone=_usable_phone(contact.phone, contact.country),
        customer_name=contact.name[:200] if contact.name else None,
        customer_locale=None,
        customer_timezone=None,
        gateway=GATEWAY,
        reason=decline.reason[:500] if decline.reason else None,
        decline_code=decline.code[:64] if decline.code else None,
        occurred_at=event.created,
        idempotency_key=refs.object_id,
        psp_customer_id=refs.customer_id,
        psp_payment_id=refs.payment_intent_id or refs.charge_id,
        psp_invoice_id=refs.invoice_id,
        psp_subscription_id=refs.subscription_id,
        raw_metadata={
            "stripe_event_id": event.id,
            "stripe_event_type": event.type,
            "stripe_object_id": refs.object_id,
            "livemode": event.livemode,
            "metadata": _dict(obj.get("metadata")),
        },
        decline_category=decline.category,
    )
