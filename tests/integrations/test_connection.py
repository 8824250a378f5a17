"""PUT / GET / DELETE /v1/integrations/stripe: validated, encrypted, masked, per organization."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import Role
from stealth_recovery.core.security import decrypt_secret
from stealth_recovery.integrations.models import StripeConnection
from stealth_recovery.integrations.stripe.service import has_connection
from tests.factories import make_account
from tests.integrations.conftest import see_committed

SECRET_KEY = "sk_test_51AbCdEfGhIjKlMnOpQrStUv1234"
WEBHOOK_SECRET = "whsec_Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hWXYZ"


def _put(client: TestClient, headers: dict[str, str], **overrides: str):  # type: ignore[no-untyped-def]
    body = {"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET, **overrides}
    return client.put("/v1/integrations/stripe", json=body, headers=headers)


class TestPutConnection:
    def test_stores_the_keys_encrypted_and_answers_masked(
        self, client: TestClient, db: Session
    ) -> None:
        # Given an admin
        admin = make_account(db)
        # When they connect Stripe
        response = _put(client, admin.headers)
        # Then the answer shows masked keys, the mode and where to point Stripe's webhooks
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["secret_key"] == "sk_test_…1234"
        assert body["webhook_secret"] == "whsec_…WXYZ"
        assert body["mode"] == "test"
        assert body["webhook_url"].endswith(f"/v1/webhooks/stripe/{admin.organization.slug}")
        assert "invoice.payment_failed" in body["enabled_events"]
        assert SECRET_KEY not in response.text and WEBHOOK_SECRET not in response.text
        # And the row holds ciphertext that decrypts to the keys
        row = db.scalar(select(StripeConnection))
        assert row is not None
        assert SECRET_KEY not in row.secret_key_encrypted
        assert WEBHOOK_SECRET not in row.webhook_secret_encrypted
        assert decrypt_secret(row.secret_key_encrypted) == SECRET_KEY
        assert decrypt_secret(row.webhook_secret_encrypted) == WEBHOOK_SECRET
        assert row.secret_key_last4 == "1234"
        assert has_connection(db, organization_id=admin.organization.id)

    def test_replaces_the_keys(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        _put(client, admin.headers)
        response = _put(client, admin.headers, secret_key="rk_live_" + "A" * 20 + "9876")
        assert response.status_code == 200
        assert response.json()["secret_key"] == "rk_live_…9876"
        assert response.json()["mode"] == "live"
        rows = db.scalars(select(StripeConnection)).all()
        assert len(rows) == 1

    def test_rejects_a_publishable_key_naming_the_field(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        response = _put(client, admin.headers, secret_key="pk_test_51AbCdEfGhIjKlMn")
        assert response.status_code == 422
        [problem] = response.json()["detail"]
        assert problem["field"] == "secret_key"
        assert "publishable" in problem["msg"]
        assert db.scalar(select(StripeConnection)) is None

    def test_rejects_a_malformed_secret_key(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        for bad in (
            "sk_prod_123456789012",
            "not-a-key",
            "sk_test_short",
            "sk_test_abc def ghi jkl",
        ):
            response = _put(client, admin.headers, secret_key=bad)
            assert response.status_code == 422, bad
            assert response.json()["detail"][0]["field"] == "secret_key"

    def test_rejects_a_malformed_webhook_secret(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        for bad in ("sk_test_51AbCdEfGhIjKl", "whsec_", "wh_sec_abcdefghijk"):
            response = _put(client, admin.headers, webhook_secret=bad)
            assert response.status_code == 422, bad
            assert response.json()["detail"][0]["field"] == "webhook_secret"

    def test_missing_fields_are_422_naming_each(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        response = client.put("/v1/integrations/stripe", json={}, headers=admin.headers)
        assert response.status_code == 422
        assert {p["field"] for p in response.json()["detail"]} == {"secret_key", "webhook_secret"}

    def test_only_admins_may_connect(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        for role in (Role.analyst, Role.operator):
            user = make_account(db, role=role, organization=admin.organization)
            assert _put(client, user.headers).status_code == 403
        assert client.put("/v1/integrations/stripe", json={}).status_code == 401
        assert db.scalar(select(StripeConnection)) is None


class TestGetConnection:
    def test_any_member_sees_it_masked(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        _put(client, admin.headers)
        analyst = make_account(db, role=Role.analyst, organization=admin.organization)
        response = client.get("/v1/integrations/stripe", headers=analyst.headers)
        assert response.status_code == 200
        assert response.json()["secret_key"] == "sk_test_…1234"
        assert SECRET_KEY not in response.text and WEBHOOK_SECRET not in response.text

    def test_not_connected_is_404(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        response = client.get("/v1/integrations/stripe", headers=admin.headers)
        assert response.status_code == 404
        assert response.json() == {"detail": "Stripe is not connected"}

    def test_another_organizations_connection_is_invisible(
        self, client: TestClient, db: Session
    ) -> None:
        _put(client, make_account(db).headers)
        other = make_account(db)
        assert client.get("/v1/integrations/stripe", headers=other.headers).status_code == 404
        assert not has_connection(db, organization_id=other.organization.id)


class TestDeleteConnection:
    def test_removes_the_keys(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        _put(client, admin.headers)
        response = client.delete("/v1/integrations/stripe", headers=admin.headers)
        assert response.status_code == 204
        see_committed(db)
        assert db.scalar(select(StripeConnection)) is None
        assert client.delete("/v1/integrations/stripe", headers=admin.headers).status_code == 404

    def test_only_admins_may_disconnect(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        _put(client, admin.headers)
        operator = make_account(db, role=Role.operator, organization=admin.organization)
        assert client.delete("/v1/integrations/stripe", headers=operator.headers).status_code == 403
        assert db.scalar(select(StripeConnection)) is not None

    def test_leaves_other_organizations_alone(self, client: TestClient, db: Session) -> None:
        first = make_account(db)
        _put(client, first.headers)
        second = make_account(db)
        assert client.delete("/v1/integrations/stripe", headers=second.headers).status_code == 404
        assert has_connection(db, organization_id=first.organization.id)
