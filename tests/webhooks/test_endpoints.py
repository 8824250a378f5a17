"""/v1/webhook-endpoints over HTTP: the secret shown once, roles, scoping, the delivery log and
replay, idempotent creation."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import Role
from stealth_recovery.core.time import shifted_clock
from stealth_recovery.webhooks.delivery import deliver_due
from stealth_recovery.webhooks.models import WebhookEndpoint
from tests.support.builders import make_account
from tests.support.webhook_receiver import WebhookReceiver


class TestEndpointCrud:
    def test_secret_is_shown_once(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        admin = make_account(db)
        created = client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": ["attempt.recovered"]},
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["secret"].startswith("whsec_")
        assert body["event_types"] == ["attempt.recovered"]
        assert body["enabled"] is True
        # Then listing and reading never show it again, and it is stored encrypted
        listed = client.get("/v1/webhook-endpoints", headers=admin.headers).json()
        assert [e["id"] for e in listed] == [body["id"]]
        assert "secret" not in listed[0]
        one = client.get(f"/v1/webhook-endpoints/{body['id']}", headers=admin.headers).json()
        assert "secret" not in one
        row = db.scalar(select(WebhookEndpoint))
        assert row is not None and body["secret"] not in row.secret

    def test_update_and_delete(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        admin = make_account(db)
        endpoint = client.post(
            "/v1/webhook-endpoints", json={"url": receiver.url}, headers=admin.headers
        ).json()
        changed = client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={"enabled": False, "description": "billing"},
            headers=admin.headers,
        ).json()
        assert changed["enabled"] is False
        assert changed["disabled_reason"] == "disabled by the merchant"
        assert changed["description"] == "billing"
        deleted = client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin.headers)
        assert deleted.status_code == 204
        assert client.get("/v1/webhook-endpoints", headers=admin.headers).json() == []

    def test_bad_input_names_the_field_and_the_rule(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        unknown = client.post(
            "/v1/webhook-endpoints",
            json={"url": "https://hooks.example.com", "event_types": ["attempt.paid"]},
            headers=admin.headers,
        )
        assert unknown.status_code == 422
        assert unknown.json()["detail"][0]["field"] == "event_types.0"
        overlap = client.post(
            "/v1/webhook-endpoints/1/rotate-secret",
            json={"overlap_hours": 500},
            headers=admin.headers,
        )
        assert overlap.status_code == 422
        assert overlap.json()["detail"][0]["field"] == "overlap_hours"
        for bad in ({}, {"url": ""}, {"url": "x" * 3000}, {"url": 5}, {"url": "a", "extra": 1}):
            response = client.post("/v1/webhook-endpoints", json=bad, headers=admin.headers)
            assert response.status_code == 422, bad

    def test_roles_and_organizations(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        admin = make_account(db)
        analyst = make_account(db, role=Role.analyst, organization=admin.organization)
        other = make_account(db)
        refused = client.post(
            "/v1/webhook-endpoints", json={"url": receiver.url}, headers=analyst.headers
        )
        assert refused.status_code == 403
        endpoint = client.post(
            "/v1/webhook-endpoints", json={"url": receiver.url}, headers=admin.headers
        ).json()
        # The analyst reads; another organization sees a 404
        assert client.get("/v1/webhook-endpoints", headers=analyst.headers).status_code == 200
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        assert client.get(path, headers=other.headers).status_code == 404
        assert client.delete(path, headers=other.headers).status_code == 404
        assert client.get(f"{path}/deliveries", headers=other.headers).status_code == 404

    def test_idempotent_creation_gives_one_endpoint_and_the_same_secret(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        admin = make_account(db)
        headers = {**admin.headers, "Idempotency-Key": "endpoint-1"}
        first = client.post("/v1/webhook-endpoints", json={"url": receiver.url}, headers=headers)
        again = client.post("/v1/webhook-endpoints", json={"url": receiver.url}, headers=headers)
        assert again.status_code == 201
        assert again.json() == first.json()
        assert db.scalar(select(func.count()).select_from(WebhookEndpoint)) == 1


class TestDeliveryLog:
    def test_log_shows_each_try_and_replay_sends_the_same_event_again(
        self, client: TestClient, db: Session, receiver: WebhookReceiver
    ) -> None:
        # Given an endpoint that failed once, then accepted
        admin = make_account(db)
        endpoint = client.post(
            "/v1/webhook-endpoints", json={"url": receiver.url}, headers=admin.headers
        ).json()
        receiver.script(503)
        receiver.answer_body = b"thanks"
        client.post(
            "/v1/events/payment_failed",
            json={
                "transaction_ref": "inv_9",
                "amount_minor": 100,
                "currency": "EUR",
                "customer_email": "a@example.com",
                "occurred_at": "2026-11-01T12:00:00Z",
            },
            headers=admin.headers,
        )
        deliver_due()
        with shifted_clock(timedelta(minutes=2)):
            deliver_due()
        path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"
        [delivery] = client.get(path, headers=admin.headers).json()
        assert delivery["status"] == "succeeded"
        assert delivery["event_type"] == "attempt.opened"
        assert [a["status_code"] for a in delivery["attempts"]] == [503, 200]
        assert delivery["attempts"][1]["response_excerpt"] == "thanks"
        assert delivery["attempts"][0]["error"] == "HTTP 503"
        assert all(a["latency_ms"] >= 0 for a in delivery["attempts"])
        # When it is replayed
        replay = client.post(f"{path}/{delivery['id']}/replay", headers=admin.headers)
        assert replay.status_code == 202, replay.text
        assert replay.json()["event_id"] == delivery["event_id"]
        assert replay.json()["replay"] is True
        deliver_due()
        # Then the receiver gets the same event id a third time
        received = receiver.wait_for(3)
        assert {r.webhook_id for r in received} == {delivery["event_id"]}
        # and an unknown delivery is a 404
        assert client.post(f"{path}/999/replay", headers=admin.headers).status_code == 404
