"""Registration, login, users, API keys, and the organization boundary."""

from __future__ import annotations

from datetime import timedelta

import jwt
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import ApiKey, Role, User
from stealth_recovery.core.time import shifted_clock
from stealth_recovery.organizations.models import Organization
from tests.support.builders import PASSWORD, make_account


def _register(
    client: TestClient, email: str = "owner@acme.example.com", slug: str | None = "acme"
) -> dict:
    body = {"organization_name": "Acme", "email": email, "password": PASSWORD}
    if slug:
        body["organization_slug"] = slug
    response = client.post("/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()


class TestRegister:
    def test_creates_organization_and_admin(self, client: TestClient, db: Session) -> None:
        body = _register(client)
        assert body["organization"]["slug"] == "acme"
        assert body["user"]["role"] == "admin"
        assert body["access_token"]
        user = db.scalar(select(User).where(User.email == "owner@acme.example.com"))
        assert user is not None and user.password_hash.startswith("$argon2")

    def test_duplicate_email_is_409_and_writes_nothing(
        self, client: TestClient, db: Session
    ) -> None:
        _register(client)
        response = client.post(
            "/v1/auth/register",
            json={
                "organization_name": "Other",
                "email": "OWNER@acme.example.com",
                "password": PASSWORD,
            },
        )
        assert response.status_code == 409
        assert "email" in response.json()["detail"]
        assert db.scalar(select(func.count()).select_from(Organization)) == 1

    def test_malformed_body_names_each_bad_field(self, client: TestClient, db: Session) -> None:
        response = client.post(
            "/v1/auth/register",
            json={"organization_name": "", "email": "not-an-email", "password": "short"},
        )
        assert response.status_code == 422
        fields = {error["field"] for error in response.json()["detail"]}
        assert fields == {"organization_name", "email", "password"}
        assert db.scalar(select(func.count()).select_from(Organization)) == 0

    def test_bad_slug_is_422(self, client: TestClient) -> None:
        response = client.post(
            "/v1/auth/register",
            json={
                "organization_name": "A",
                "organization_slug": "Not A Slug",
                "email": "a@b.co",
                "password": PASSWORD,
            },
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "organization_slug"


class TestLogin:
    def test_returns_jwt_with_claims(self, client: TestClient) -> None:
        _register(client)
        response = client.post(
            "/v1/auth/login", json={"email": "owner@acme.example.com", "password": PASSWORD}
        )
        assert response.status_code == 200
        claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
        assert {"sub", "org_id", "role", "exp"} <= claims.keys()
        assert claims["role"] == "admin"

    def test_wrong_password_is_401(self, client: TestClient) -> None:
        _register(client)
        response = client.post(
            "/v1/auth/login", json={"email": "owner@acme.example.com", "password": "wrong-password"}
        )
        assert response.status_code == 401

    def test_unknown_email_is_401(self, client: TestClient) -> None:
        response = client.post(
            "/v1/auth/login", json={"email": "nobody@acme.example.com", "password": PASSWORD}
        )
        assert response.status_code == 401


class TestTokens:
    def test_me_with_token(self, client: TestClient) -> None:
        token = _register(client)["access_token"]
        response = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert response.json()["organization"]["slug"] == "acme"

    def test_missing_token_is_401(self, client: TestClient) -> None:
        assert client.get("/v1/auth/me").status_code == 401

    def test_expired_token_is_401(self, client: TestClient) -> None:
        with shifted_clock(timedelta(hours=-3)):
            token = _register(client)["access_token"]
        response = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert "expired" in response.json()["detail"]

    def test_tampered_token_is_401(self, client: TestClient) -> None:
        token = _register(client)["access_token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        forged = jwt.encode(
            {**claims, "role": "admin", "org_id": 999}, "guessed-secret", algorithm="HS256"
        )
        assert (
            client.get("/v1/auth/me", headers={"Authorization": f"Bearer {forged}"}).status_code
            == 401
        )
        head, payload, signature = token.split(".")
        flipped = head + "." + payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
        assert (
            client.get("/v1/auth/me", headers={"Authorization": f"Bearer {flipped}"}).status_code
            == 401
        )


class TestUsers:
    def test_admin_adds_user_with_role(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        response = client.post(
            "/v1/users",
            headers=admin.headers,
            json={"email": "ops@example.com", "password": PASSWORD, "role": "operator"},
        )
        assert response.status_code == 201
        assert response.json()["role"] == "operator"
        listed = client.get("/v1/users", headers=admin.headers).json()
        assert {u["email"] for u in listed} == {admin.user.email, "ops@example.com"}

    def test_unknown_role_is_422(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        response = client.post(
            "/v1/users",
            headers=admin.headers,
            json={"email": "x@example.com", "password": PASSWORD, "role": "owner"},
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "role"

    def test_operator_calling_admin_route_is_403(self, client: TestClient, db: Session) -> None:
        operator = make_account(db, role=Role.operator)
        response = client.post(
            "/v1/users",
            headers=operator.headers,
            json={"email": "x@example.com", "password": PASSWORD, "role": "analyst"},
        )
        assert response.status_code == 403

    def test_deactivated_user_is_401(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        analyst = make_account(db, role=Role.analyst, organization=admin.organization)
        response = client.post(f"/v1/users/{analyst.user.id}/deactivate", headers=admin.headers)
        assert response.status_code == 200 and response.json()["is_active"] is False
        assert client.get("/v1/auth/me", headers=analyst.headers).status_code == 401
        login = client.post(
            "/v1/auth/login", json={"email": analyst.user.email, "password": PASSWORD}
        )
        assert login.status_code == 401

    def test_admin_cannot_deactivate_themselves(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        response = client.post(f"/v1/users/{admin.user.id}/deactivate", headers=admin.headers)
        assert response.status_code == 409

    def test_other_organizations_user_is_404(self, client: TestClient, db: Session) -> None:
        a = make_account(db)
        b = make_account(db)
        response = client.post(f"/v1/users/{a.user.id}/deactivate", headers=b.headers)
        assert response.status_code == 404
        db.refresh(a.user)
        assert a.user.is_active


class TestApiKeys:
    def _create(self, client: TestClient, headers: dict[str, str]) -> dict:
        response = client.post("/v1/api-keys", headers=headers, json={"name": "billing"})
        assert response.status_code == 201, response.text
        return response.json()

    def test_key_is_shown_once_and_stored_as_hash(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        created = self._create(client, admin.headers)
        assert created["key"].startswith("sk_")
        stored = db.scalar(select(ApiKey))
        assert stored is not None and created["key"] not in (stored.key_hash, stored.prefix)
        listed = client.get("/v1/api-keys", headers=admin.headers).json()
        assert "key" not in listed[0]
        assert listed[0]["masked_key"].endswith(created["key"][-4:])
        assert created["key"] not in listed[0]["masked_key"]

    def test_key_works_as_bearer_and_header(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        key = self._create(client, admin.headers)["key"]
        for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
            response = client.get("/v1/auth/me", headers=headers)
            assert response.status_code == 200
            assert response.json()["auth"] == "api_key"
            assert response.json()["organization"]["id"] == admin.organization.id

    def test_revoked_key_is_401(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        created = self._create(client, admin.headers)
        assert (
            client.delete(f"/v1/api-keys/{created['id']}", headers=admin.headers).status_code == 200
        )
        assert client.get("/v1/auth/me", headers={"X-API-Key": created["key"]}).status_code == 401

    def test_api_key_cannot_manage_keys(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        key = self._create(client, admin.headers)["key"]
        assert client.get("/v1/api-keys", headers={"X-API-Key": key}).status_code == 403

    def test_other_organizations_key_is_404(self, client: TestClient, db: Session) -> None:
        a = make_account(db)
        b = make_account(db)
        created = self._create(client, a.headers)
        assert client.delete(f"/v1/api-keys/{created['id']}", headers=b.headers).status_code == 404
        assert client.get("/v1/auth/me", headers={"X-API-Key": created["key"]}).status_code == 200
