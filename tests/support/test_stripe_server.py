"""The fake Stripe server answers as Stripe's API reference documents (so tests of our code
against it mean something): auth, form encoding, errors, idempotency."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.stripe_server import FakeStripe, decode_form

_CREATE = {
    "mode": "payment",
    "success_url": "https://example.test/ok",
    "line_items[0][quantity]": "1",
    "line_items[0][price_data][currency]": "usd",
    "line_items[0][price_data][unit_amount]": "1500",
    "line_items[0][price_data][product_data][name]": "Thing",
    "metadata[order]": "42",
}


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe(secret_key="sk_test_fake_0123456789").start()
    yield server
    server.stop()


class TestFakeStripe:
    def test_decodes_bracketed_form_keys_into_nested_values(self) -> None:
        raw = str(httpx.QueryParams(_CREATE))
        assert decode_form(raw)["line_items"][0]["price_data"]["product_data"] == {"name": "Thing"}
        assert decode_form(raw)["metadata"] == {"order": "42"}

    def test_basic_auth_with_the_key_as_user_is_accepted(self, fake: FakeStripe) -> None:
        response = httpx.post(
            f"{fake.base_url}/v1/checkout/sessions", data=_CREATE, auth=(fake.secret_key, "")
        )
        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "checkout.session"
        assert (body["status"], body["payment_status"], body["amount_total"]) == (
            "open",
            "unpaid",
            1500,
        )
        assert body["metadata"] == {"order": "42"}

    def test_another_key_is_401_with_stripes_error_shape(self, fake: FakeStripe) -> None:
        response = httpx.get(
            f"{fake.base_url}/v1/checkout/sessions/cs_x",
            headers={"Authorization": "Bearer sk_test_other"},
        )
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "invalid_request_error"

    def test_a_missing_parameter_is_400_naming_it(self, fake: FakeStripe) -> None:
        data = {k: v for k, v in _CREATE.items() if k != "success_url"}
        response = httpx.post(
            f"{fake.base_url}/v1/checkout/sessions", data=data, auth=(fake.secret_key, "")
        )
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "success_url"

    def test_an_unknown_session_is_404_resource_missing(self, fake: FakeStripe) -> None:
        response = httpx.get(
            f"{fake.base_url}/v1/checkout/sessions/cs_test_nope", auth=(fake.secret_key, "")
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "resource_missing"

    def test_an_idempotency_key_replays_or_refuses_other_parameters(self, fake: FakeStripe) -> None:
        url = f"{fake.base_url}/v1/checkout/sessions"
        headers = {"Idempotency-Key": "k-1"}
        auth = (fake.secret_key, "")
        first = httpx.post(url, data=_CREATE, headers=headers, auth=auth)
        again = httpx.post(url, data=_CREATE, headers=headers, auth=auth)
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        other = httpx.post(url, data={**_CREATE, "mode": "setup"}, headers=headers, auth=auth)
        assert other.status_code == 400
        assert other.json()["error"]["type"] == "idempotency_error"
        assert len(fake.sessions) == 1

    def test_invoice_payments_are_listed_by_invoice_or_by_payment_intent(
        self, fake: FakeStripe
    ) -> None:
        fake.add_invoice(
            {"id": "in_1", "object": "invoice", "amount_due": 500, "currency": "usd"},
            payment_intent="pi_1",
        )
        fake.add_invoice({"id": "in_2", "object": "invoice"}, payment_intent="pi_2")
        auth = (fake.secret_key, "")
        by_invoice = httpx.get(
            f"{fake.base_url}/v1/invoice_payments", params={"invoice": "in_1"}, auth=auth
        ).json()
        by_intent = httpx.get(
            f"{fake.base_url}/v1/invoice_payments",
            params={"payment[type]": "payment_intent", "payment[payment_intent]": "pi_2"},
            auth=auth,
        ).json()
        assert by_invoice["object"] == "list"
        [first] = by_invoice["data"]
        assert (first["object"], first["invoice"], first["is_default"]) == (
            "invoice_payment",
            "in_1",
            True,
        )
        assert first["payment"] == {"type": "payment_intent", "payment_intent": "pi_1"}
        assert [p["invoice"] for p in by_intent["data"]] == ["in_2"]

    def test_invoice_payments_by_payment_need_its_type(self, fake: FakeStripe) -> None:
        response = httpx.get(
            f"{fake.base_url}/v1/invoice_payments",
            params={"payment[payment_intent]": "pi_2"},
            auth=(fake.secret_key, ""),
        )
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "payment[type]"
