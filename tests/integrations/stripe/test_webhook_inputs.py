"""Signed webhooks whose content no database or clock can hold are a 4xx, never a 500."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.settings import get_settings
from stealth_recovery.payments.models import PspEvent
from tests.support.providers import meta_signature
from tests.support.stripe_events import StripeOrg, event, payment_intent


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _stored(db: Session) -> int:
    db.rollback()
    return int(db.scalar(select(func.count()).select_from(PspEvent)) or 0)


class TestStripe:
    @pytest.mark.parametrize(
        "created",
        [10**20, -(10**20), 1e300, 253402300800],
        ids=["huge", "negative", "float", "y10k"],
    )
    def test_a_created_no_clock_can_hold_is_400(
        self, stripe_org: StripeOrg, db: Session, created: float
    ) -> None:
        body = {**event("payment_intent.payment_failed", payment_intent()), "created": created}
        response = stripe_org.post(body)
        assert response.status_code == 400, response.text
        assert _stored(db) == 0

    @pytest.mark.parametrize(
        "payload",
        [
            '{"id": "evt_1", "type": "x", "data": {"object": {"deep": ' + _nested(5000) + "}}}",
            '{"id": "evt_1", "type": "x", "data": {"object": {"deep": ' + _nested(100) + "}}}",
            '{"id": "evt_1", "type": "x", "data": {"object": {"n": NaN}}}',
            '{"id": "evt_1", "type": "x", "data": {"object": {"n": 1e999}}}',
            '{"id": "evt_1", "type": "x", "data": {"object": {"s": "a\\u0000b"}}}',
        ],
        ids=["deeper-than-python", "deeper-than-64", "nan", "infinite", "nul"],
    )
    def test_a_body_the_database_cannot_store_is_400(
        self, stripe_org: StripeOrg, db: Session, payload: str
    ) -> None:
        response = stripe_org.post(payload.encode())
        assert response.status_code == 400, response.text
        assert "malformed event" in response.json()["detail"]
        assert _stored(db) == 0

    def test_an_ordinary_event_still_goes_through(self, stripe_org: StripeOrg) -> None:
        body = event("payment_intent.payment_failed", payment_intent())
        assert stripe_org.post(json.dumps(body).encode()).status_code == 200


class TestWhatsApp:
    @pytest.mark.parametrize(
        "payload",
        ['{"entry": ' + _nested(5000) + "}", '{"entry": [{"x": NaN}]}'],
        ids=["deep", "nan"],
    )
    def test_a_signed_body_too_deep_or_not_json_is_422(
        self,
        client: TestClient,
        db: Session,
        monkeypatch: pytest.MonkeyPatch,
        payload: str,
    ) -> None:
        monkeypatch.setenv("WHATSAPP_APP_SECRET", "meta-app-secret")
        get_settings.cache_clear()
        body = payload.encode()
        response = client.post(
            "/v1/webhooks/whatsapp",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": meta_signature(body, "meta-app-secret"),
            },
        )
        assert response.status_code == 422, response.text
