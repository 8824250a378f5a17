"""Reading Stripe event objects: ids, contact, amount and decline, across API versions."""

from __future__ import annotations

from typing import Any

import pytest

from stealth_recovery.integrations.stripe.events import (
    MalformedEvent,
    decline_of,
    failure_input,
    parse_event,
    refs_of,
)
from stealth_recovery.payments.declines import DeclineCategory
from tests.support.stripe_events import charge, event, invoice, payment_intent


def _failure(event_type: str, obj: dict[str, Any]):  # type: ignore[no-untyped-def]
    parsed = parse_event(event(event_type, obj))
    refs = refs_of(parsed)
    return failure_input(parsed, refs, external_ref=refs.external_ref)


class TestParseEvent:
    @pytest.mark.parametrize(
        "payload",
        [[], {"type": "x", "data": {"object": {}}}, {"id": "evt_1", "data": {"object": {}}}],
        ids=["not-an-object", "no-id", "no-type"],
    )
    def test_refuses_what_is_not_an_event(self, payload: Any) -> None:
        with pytest.raises(MalformedEvent):
            parse_event(payload)

    def test_reads_the_envelope(self) -> None:
        body = event("charge.failed", {"id": "ch_1", "object": "charge"})
        parsed = parse_event(body)
        assert (parsed.id, parsed.type, parsed.livemode) == (body["id"], "charge.failed", False)
        assert int(parsed.created.timestamp()) == body["created"]


class TestRefs:
    def test_a_newer_api_invoice_names_its_payment_intent_in_payments(self) -> None:
        inv = invoice()
        del inv["payment_intent"]
        inv["payments"] = {
            "object": "list",
            "data": [{"object": "invoice_payment", "payment": {"payment_intent": "pi_new"}}],
        }
        refs = refs_of(parse_event(event("invoice.payment_failed", inv)))
        assert refs.candidates == [inv["id"], "pi_new"]
        assert refs.external_ref == inv["id"]

    def test_a_charge_of_a_payment_intent_belongs_to_the_intent(self) -> None:
        refs = refs_of(parse_event(event("charge.failed", charge(payment_intent_id="pi_9"))))
        assert refs.external_ref == "pi_9"
        assert refs.charge_id is not None and refs.charge_id in refs.candidates

    def test_expanded_objects_count_as_their_ids(self) -> None:
        pi = payment_intent()
        pi["invoice"] = {"id": "in_exp", "object": "invoice"}
        refs = refs_of(parse_event(event("payment_intent.payment_failed", pi)))
        assert refs.invoice_id == "in_exp"
        assert refs.external_ref == "in_exp"

    def test_our_metadata_names_the_attempt(self) -> None:
        pi = payment_intent(
            metadata={
                "stealth_recovery_attempt_id": "12",
                "stealth_recovery_organization_id": "3",
            }
        )
        refs = refs_of(parse_event(event("payment_intent.succeeded", pi)))
        assert (refs.attempt_id, refs.organization_id) == (12, 3)


class TestDecline:
    @pytest.mark.parametrize(
        ("decline_code", "code", "expected", "category"),
        [
            ("insufficient_funds", "card_declined", "insufficient_funds", "soft"),
            (None, "expired_card", "expired_card", "customer_action"),
            (
                "authentication_required",
                "card_declined",
                "authentication_required",
                "customer_action",
            ),
            ("Lost_Card", "card_declined", "lost_card", "hard"),
            ("something_new", "card_declined", "something_new", "soft"),
            (None, None, None, "soft"),
        ],
    )
    def test_payment_intent_last_payment_error(
        self, decline_code: str | None, code: str | None, expected: str | None, category: str
    ) -> None:
        error = {"code": code, "decline_code": decline_code} if code else None
        decline = decline_of({"object": "payment_intent", "last_payment_error": error})
        assert (decline.code, decline.category) == (expected, DeclineCategory(category))

    def test_charge_outcome_reason_before_failure_code(self) -> None:
        decline = decline_of(charge(reason="pickup_card", failure_code="card_declined"))
        assert (decline.code, decline.category) == ("pickup_card", DeclineCategory.hard)

    def test_charge_without_outcome_reason_uses_failure_code(self) -> None:
        decline = decline_of(charge(reason=None, failure_code="incorrect_cvc"))
        assert (decline.code, decline.category) == (
            "incorrect_cvc",
            DeclineCategory.customer_action,
        )


class TestFailureInput:
    def test_contact_falls_back_to_shipping_and_expanded_customer(self) -> None:
        pi = payment_intent(email=None, name=None, phone=None)
        pi["shipping"] = {"name": "Ship Name", "phone": "+34 612 34 56 78", "address": {}}
        pi["customer"] = {"id": "cus_x", "object": "customer", "email": "Cust@Example.com"}
        data = _failure("payment_intent.payment_failed", pi)
        assert data.customer_email == "Cust@example.com"
        assert data.customer_name == "Ship Name"
        assert data.customer_phone == "+34612345678"
        assert data.psp_customer_id == "cus_x"

    def test_invoice_amount_is_what_remains_to_pay(self) -> None:
        inv = invoice(amount_due=5000)
        inv["amount_remaining"] = 3000
        data = _failure("invoice.payment_failed", inv)
        assert (data.amount_minor, data.currency) == (3000, "gbp")
        assert data.idempotency_key == inv["id"]
        assert data.gateway == "stripe"

    def test_occurred_at_is_the_events_creation(self) -> None:
        body = event("charge.failed", charge())
        parsed = parse_event(body)
        data = failure_input(parsed, refs_of(parsed), external_ref="x")
        assert int(data.occurred_at.timestamp()) == body["created"]
        assert data.raw_metadata["stripe_event_id"] == body["id"]
