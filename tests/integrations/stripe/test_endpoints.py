"""PUT / GET / DELETE /v1/integrations/stripe: validated, encrypted, masked, per organization."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import Role
from stealth_recovery.core.security import decrypt_secret
from stealth_recovery.integrations.models import StripeConnection
from stealth_recovery.integrations.stripe.service import has_connection
from tests.support.builders import login, make_account, see_committed

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
        assert response.json() == {
            "detail": "Stripe is not connected",
            "type": "stripe_not_connected",
        }

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


class TestSecretKeyRotation:
    OLD = "old-key-4c1f9a8e7d6b5c4a3f2e1d0c9b8a7f6e5d4c"
    NEW = "new-key-0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b"

    def _use(self, monkeypatch: pytest.MonkeyPatch, key: str, previous: str | None) -> None:
        from stealth_recovery.core.settings import get_settings

        monkeypatch.setenv("SECRET_KEY", key)
        if previous is None:
            monkeypatch.delenv("SECRET_KEY_PREVIOUS", raising=False)
        else:
            monkeypatch.setenv("SECRET_KEY_PREVIOUS", previous)
        get_settings.cache_clear()

    def test_the_previous_key_decrypts_until_rotate_secrets_re_encrypts_with_the_new(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from typer.testing import CliRunner

        from stealth_recovery.cli import app as cli

        # Given keys stored under the old SECRET_KEY
        self._use(monkeypatch, self.OLD, None)
        admin = make_account(db)
        assert _put(client, admin.headers).status_code == 200
        # When the operator sets the new key and keeps the old one as SECRET_KEY_PREVIOUS
        self._use(monkeypatch, self.NEW, self.OLD)
        # Then the stored keys still read (and a fresh login works with the new key)
        token = login(client, admin.user.email)
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/integrations/stripe", headers=headers).json()["secret_key"] == (
            "sk_test_…1234"
        )
        # When rotate-secrets runs
        result = CliRunner().invoke(cli, ["rotate-secrets"])
        assert result.exit_code == 0, result.output
        assert "1 organization" in result.output
        # Then the rows decrypt with the new key alone, and the old key is not needed any more
        self._use(monkeypatch, self.NEW, None)
        db.expire_all()
        row = db.scalars(select(StripeConnection)).one()
        assert decrypt_secret(row.secret_key_encrypted) == SECRET_KEY
        assert decrypt_secret(row.webhook_secret_encrypted) == WEBHOOK_SECRET
        # And under the old key alone they no longer decrypt (it really was re-encrypted)
        self._use(monkeypatch, self.OLD, None)
        with pytest.raises(RuntimeError, match="cannot be decrypted"):
            decrypt_secret(row.secret_key_encrypted)

    def test_rotate_secrets_without_a_previous_key_says_what_to_set(
        self, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from typer.testing import CliRunner

        from stealth_recovery.cli import app as cli

        self._use(monkeypatch, self.NEW, None)
        result = CliRunner().invoke(cli, ["rotate-secrets"])
        assert result.exit_code == 2
        assert "SECRET_KEY_PREVIOUS" in result.output
