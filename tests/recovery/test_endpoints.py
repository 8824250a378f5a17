"""Attempts API, the pay link's JSON and the completion endpoint, over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import Role
from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.recovery.models import AttemptStatus
from stealth_recovery.recovery.service import cancel_attempt, complete_attempt
from tests.support.builders import (
    ROLES,
    api_key_headers,
    headers_for,
    make_account,
    make_attempt,
    reload_attempt,
)


class TestListAttempts:
    def test_newest_first_with_transaction(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        older = make_attempt(db, admin.organization, ref="inv-1")
        newer = make_attempt(db, admin.organization, ref="inv-2")
        body = client.get("/v1/attempts", headers=admin.headers).json()
        assert [item["id"] for item in body["items"]] == [newer.id, older.id]
        assert body["items"][0]["transaction"]["transaction_ref"] == "inv-2"
        assert body["next_cursor"] is None

    def test_cursor_walks_every_attempt_once(self, client: TestClient, db: Session) -> None:
        # Given seven attempts, some created in the same instant
        admin = make_account(db)
        ids = {make_attempt(db, admin.organization).id for _ in range(7)}
        # When paged through three at a time
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/attempts", params=params, headers=admin.headers).json()
            seen += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        # Then each attempt shows up once, newest first
        assert pages == 3
        assert sorted(seen, reverse=True) == seen
        assert set(seen) == ids and len(seen) == 7

    def test_filters_by_status_ref_email_and_dates(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        paid = make_attempt(db, admin.organization, ref="inv-paid", email="Paid.Ana@example.com")
        complete_attempt(db, attempt=paid, paid_via="api")
        db.commit()
        with shifted_clock(timedelta(days=2)):
            later = make_attempt(db, admin.organization, ref="inv-later")
        headers = admin.headers

        def ids(**params: str) -> list[int]:
            response = client.get("/v1/attempts", params=params, headers=headers)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert ids(status="completed") == [paid.id]
        assert ids(status="created") == [later.id]
        assert ids(transaction_ref="inv-later") == [later.id]
        # the local part is stored as written; the filter ignores case
        assert ids(customer_email="paid.ana@EXAMPLE.com") == [paid.id]
        tomorrow = (utc_now() + timedelta(days=1)).isoformat()
        assert ids(created_from=tomorrow) == [later.id]
        assert ids(created_to=tomorrow) == [paid.id]

    def test_multiple_statuses(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        open_one = make_attempt(db, admin.organization)
        stopped = make_attempt(db, admin.organization)
        cancel_attempt(db, attempt=stopped, reason="test")
        db.commit()
        response = client.get("/v1/attempts?status=created&status=cancelled", headers=admin.headers)
        assert {item["id"] for item in response.json()["items"]} == {open_one.id, stopped.id}

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"cursor": "not-a-cursor"}, "cursor"),
            ({"limit": "101"}, "limit"),
            ({"limit": "0"}, "limit"),
            ({"status": "paid"}, "status"),
            ({"created_from": "2026-11-01T00:00:00"}, "created_from"),
            ({"customer_email": "nobody"}, "customer_email"),
        ],
    )
    def test_bad_query_is_422_naming_the_parameter(
        self, client: TestClient, db: Session, params: dict[str, str], field: str
    ) -> None:
        admin = make_account(db)
        response = client.get("/v1/attempts", params=params, headers=admin.headers)
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"].startswith(field)

    def test_another_organizations_attempts_are_never_listed(
        self, client: TestClient, db: Session
    ) -> None:
        a = make_account(db)
        b = make_account(db)
        make_attempt(db, a.organization, ref="shared-ref")
        body = client.get(
            "/v1/attempts", params={"transaction_ref": "shared-ref"}, headers=b.headers
        ).json()
        assert body["items"] == []

    @pytest.mark.parametrize("role", [Role.analyst, Role.operator])
    def test_every_role_lists(self, client: TestClient, db: Session, role: Role) -> None:
        admin = make_account(db)
        make_attempt(db, admin.organization)
        other = make_account(db, role=role, organization=admin.organization)
        assert len(client.get("/v1/attempts", headers=other.headers).json()["items"]) == 1

    def test_api_key_lists(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        make_attempt(db, admin.organization)
        headers = api_key_headers(db, admin.organization)
        assert client.get("/v1/attempts", headers=headers).status_code == 200

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get("/v1/attempts").status_code == 401


class TestGetAttempt:
    def test_with_transaction_and_next_reminder(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(
            db, admin.organization, due=False, email="c@example.com", phone="+4915123456789"
        )
        body = client.get(f"/v1/attempts/{attempt.id}", headers=admin.headers).json()
        assert body["id"] == attempt.id
        assert body["pay_url"].endswith(f"/pay/{attempt.token}")
        assert body["transaction"]["customer_email"] == "c@example.com"
        assert body["next_reminder"]["retry_number"] == 0
        assert body["next_reminder"]["channels"] == ["email"]
        assert body["next_reminder"]["due_at"] == body["next_retry_at"]

    def test_final_attempt_has_no_next_reminder(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        complete_attempt(db, attempt=attempt, paid_via="api")
        db.commit()
        body = client.get(f"/v1/attempts/{attempt.id}", headers=admin.headers).json()
        assert body["status"] == "completed"
        assert body["next_reminder"] is None

    def test_another_organizations_attempt_is_404(self, client: TestClient, db: Session) -> None:
        a = make_account(db)
        b = make_account(db)
        attempt = make_attempt(db, a.organization)
        response = client.get(f"/v1/attempts/{attempt.id}", headers=b.headers)
        assert response.status_code == 404
        assert response.json() == {
            "detail": "recovery attempt not found",
            "type": "attempt_not_found",
        }

    def test_ids_beyond_the_database_range_are_404_or_422(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        assert client.get("/v1/attempts/2147483647", headers=admin.headers).status_code == 404
        assert client.get("/v1/attempts/2147483648", headers=admin.headers).status_code == 422

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get("/v1/attempts/1").status_code == 401


class TestCancelAttempt:
    @pytest.mark.parametrize("role", [Role.admin, Role.operator])
    def test_admin_or_operator_cancels(self, client: TestClient, db: Session, role: Role) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        actor = (
            admin
            if role == Role.admin
            else make_account(db, role=role, organization=admin.organization)
        )
        response = client.post(
            f"/v1/attempts/{attempt.id}/cancel",
            json={"reason": "paid by bank transfer"},
            headers=actor.headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "cancelled"
        assert body["cancel_reason"] == "paid by bank transfer"
        assert body["next_reminder"] is None
        stored = reload_attempt(db, attempt)
        assert stored.status == AttemptStatus.cancelled and stored.next_retry_at is None

    def test_without_a_body_uses_a_default_reason(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        response = client.post(f"/v1/attempts/{attempt.id}/cancel", headers=admin.headers)
        assert response.status_code == 200
        assert response.json()["cancel_reason"] == "cancelled by an operator"

    def test_final_attempt_is_409(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        complete_attempt(db, attempt=attempt, paid_via="api")
        db.commit()
        response = client.post(f"/v1/attempts/{attempt.id}/cancel", headers=admin.headers)
        assert response.status_code == 409
        assert response.json() == {
            "detail": "attempt is already completed",
            "type": "attempt_not_open",
        }
        assert reload_attempt(db, attempt).status == AttemptStatus.completed

    def test_analyst_and_api_key_are_refused(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        analyst = make_account(db, role=Role.analyst, organization=admin.organization)
        key = api_key_headers(db, admin.organization)
        for headers in (analyst.headers, key):
            response = client.post(f"/v1/attempts/{attempt.id}/cancel", headers=headers)
            assert response.status_code == 403
        assert reload_attempt(db, attempt).is_open

    def test_another_organizations_attempt_is_404(self, client: TestClient, db: Session) -> None:
        a = make_account(db)
        b = make_account(db)
        attempt = make_attempt(db, a.organization)
        response = client.post(f"/v1/attempts/{attempt.id}/cancel", headers=b.headers)
        assert response.status_code == 404
        assert reload_attempt(db, attempt).is_open

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.post("/v1/attempts/1/cancel").status_code == 401


class TestRecoveryByToken:
    def test_returns_what_the_page_shows(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization, amount_minor=4999, locale="de_DE")
        response = client.get(f"/v1/recoveries/by_token/{attempt.token}")
        assert response.status_code == 200
        body = response.json()
        assert body["merchant_name"] == admin.organization.name
        assert body["amount_display"] == "49,99\xa0€"
        assert body["pay_action"].endswith(f"/pay/{attempt.token}/pay")
        assert "customer_email" not in body
        # Only the HTML page marks the attempt opened
        assert reload_attempt(db, attempt).opened_at is None

    def test_unknown_token_is_404(self, client: TestClient, db: Session) -> None:
        response = client.get("/v1/recoveries/by_token/" + "x" * 43)
        assert response.status_code == 404
        assert response.json() == {
            "detail": "this payment link does not exist",
            "type": "pay_link_not_found",
        }

    def test_expired_link_is_410(self, client: TestClient, db: Session) -> None:
        attempt = make_attempt(db, make_account(db).organization)
        with shifted_clock(timedelta(days=8)):
            response = client.get(f"/v1/recoveries/by_token/{attempt.token}")
        assert response.status_code == 410
        assert response.json() == {
            "detail": "this payment link has expired",
            "type": "pay_link_expired",
        }

    def test_paid_link_is_410(self, client: TestClient, db: Session) -> None:
        attempt = make_attempt(db, make_account(db).organization)
        complete_attempt(db, attempt=attempt, paid_via="api")
        db.commit()
        response = client.get(f"/v1/recoveries/by_token/{attempt.token}")
        assert response.status_code == 410
        assert response.json() == {
            "detail": "this payment has already been made",
            "type": "pay_link_paid",
        }

    def test_lookups_are_rate_limited_per_client(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a limit of 5 lookups a minute
        from stealth_recovery.core.settings import get_settings

        monkeypatch.setenv("TOKEN_RATE_LIMIT_PER_MINUTE", "5")
        get_settings.cache_clear()
        try:
            # When one address tries 6 tokens
            codes = [
                client.get(f"/v1/recoveries/by_token/{'a' * 40}{n:03d}").status_code
                for n in range(6)
            ]
        finally:
            monkeypatch.delenv("TOKEN_RATE_LIMIT_PER_MINUTE")
            get_settings.cache_clear()
        # Then the sixth is refused
        assert codes == [404] * 5 + [429]


class TestCompleteRecovery:
    def test_api_key_completes_and_stops_reminders(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        headers = api_key_headers(db, admin.organization)
        response = client.post(f"/v1/recoveries/{attempt.id}/complete", headers=headers)
        assert response.status_code == 200
        assert response.json()["status"] == "completed"
        assert response.json()["changed"] is True
        stored = reload_attempt(db, attempt)
        assert stored.status == AttemptStatus.completed
        assert stored.next_retry_at is None

    def test_admin_completes_and_again_changes_nothing(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        first = client.post(f"/v1/recoveries/{attempt.id}/complete", headers=admin.headers)
        again = client.post(f"/v1/recoveries/{attempt.id}/complete", headers=admin.headers)
        assert (first.status_code, again.status_code) == (200, 200)
        assert again.json()["changed"] is False
        assert again.json()["completed_at"] == first.json()["completed_at"]

    def test_cancelled_attempt_is_409(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        cancel_attempt(db, attempt=attempt, reason="test")
        db.commit()
        response = client.post(f"/v1/recoveries/{attempt.id}/complete", headers=admin.headers)
        assert response.status_code == 409

    @pytest.mark.parametrize("role", [Role.analyst, Role.operator])
    def test_other_roles_are_refused(self, client: TestClient, db: Session, role: Role) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        other = make_account(db, role=role, organization=admin.organization)
        response = client.post(f"/v1/recoveries/{attempt.id}/complete", headers=other.headers)
        assert response.status_code == 403
        assert reload_attempt(db, attempt).is_open

    def test_another_organizations_attempt_is_404(self, client: TestClient, db: Session) -> None:
        a = make_account(db)
        attempt = make_attempt(db, a.organization)
        headers = api_key_headers(db, make_account(db).organization)
        response = client.post(f"/v1/recoveries/{attempt.id}/complete", headers=headers)
        assert response.status_code == 404
        assert reload_attempt(db, attempt).is_open

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.post("/v1/recoveries/1/complete").status_code == 401


class TestRoleMatrix:
    """Every role (and an API key) against every attempt route: allowed, or 403."""

    @pytest.mark.parametrize("role", ROLES)
    def test_each_route_by_role(self, client: TestClient, db: Session, role: str) -> None:
        owner = make_account(db)
        to_cancel = make_attempt(db, owner.organization)
        to_complete = make_attempt(db, owner.organization)
        headers = headers_for(db, owner.organization, role)
        codes = {
            "list": client.get("/v1/attempts", headers=headers).status_code,
            "get": client.get(f"/v1/attempts/{to_cancel.id}", headers=headers).status_code,
            "cancel": client.post(
                f"/v1/attempts/{to_cancel.id}/cancel", headers=headers
            ).status_code,
            "complete": client.post(
                f"/v1/recoveries/{to_complete.id}/complete", headers=headers
            ).status_code,
        }
        allowed = {
            "admin": {"cancel", "complete"},
            "operator": {"cancel"},
            "api_key": {"complete"},
            "analyst": set(),
        }[role]
        assert codes == {
            "list": 200,
            "get": 200,
            "cancel": 200 if "cancel" in allowed else 403,
            "complete": 200 if "complete" in allowed else 403,
        }
