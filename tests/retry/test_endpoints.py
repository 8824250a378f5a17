"""The seed's /v1/retry API over HTTP: shapes, roles, errors and organization isolation."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import Role
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt
from stealth_recovery.recovery.service import cancel_attempt
from stealth_recovery.retry.models import RetryPolicy
from tests.support.builders import (
    ROLES,
    add_log,
    api_key_headers,
    headers_for,
    make_account,
    make_attempt,
    make_policy,
)

SEED_POLICY = {
    "name": "Aggressive Recovery",
    "max_retries": 5,
    "initial_delay_minutes": 30,
    "backoff_multiplier": 2,
    "max_delay_minutes": 720,
    "enabled_channels": ["email", "sms"],
}
POLICY_FIELDS = {
    "id",
    "org_id",
    "name",
    "max_retries",
    "initial_delay_minutes",
    "backoff_multiplier",
    "max_delay_minutes",
    "enabled_channels",
    "is_active",
    "created_at",
    "updated_at",
}
# Added after the seed, beside its fields: the send window (null without one).
WINDOW_FIELDS = {"window_start", "window_end", "window_days", "window_skip_holidays"}
NOTIFICATION_FIELDS = {
    "id",
    "channel",
    "recipient",
    "status",
    "provider",
    "provider_message_id",
    "sent_at",
    "delivered_at",
    "failed_at",
    "error_message",
    "created_at",
}


class TestCreatePolicy:
    def test_admin_creates_the_seed_example(self, client: TestClient, db: Session) -> None:
        # Given an admin
        admin = make_account(db)
        # When the seed's example is posted
        response = client.post("/v1/retry/policies", json=SEED_POLICY, headers=admin.headers)
        # Then the policy comes back in the seed's shape plus the send window's fields, active
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == POLICY_FIELDS | WINDOW_FIELDS
        assert body["window_start"] is None and body["window_days"] is None
        assert body["org_id"] == admin.organization.id
        assert body["is_active"] is True
        assert {k: body[k] for k in SEED_POLICY} == SEED_POLICY

    def test_new_policy_replaces_the_active_one(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        first = client.post("/v1/retry/policies", json=SEED_POLICY, headers=admin.headers).json()
        second = client.post(
            "/v1/retry/policies", json={**SEED_POLICY, "name": "Gentle"}, headers=admin.headers
        ).json()
        listed = client.get("/v1/retry/policies", headers=admin.headers).json()
        assert [p["id"] for p in listed] == [second["id"], first["id"]]
        assert [p["is_active"] for p in listed] == [True, False]

    @pytest.mark.parametrize("role", [Role.analyst, Role.operator])
    def test_other_roles_are_refused(self, client: TestClient, db: Session, role: Role) -> None:
        account = make_account(db, role=role)
        response = client.post("/v1/retry/policies", json=SEED_POLICY, headers=account.headers)
        assert response.status_code == 403
        assert db.scalar(select(RetryPolicy)) is None

    def test_api_key_is_refused(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        headers = api_key_headers(db, admin.organization)
        response = client.post("/v1/retry/policies", json=SEED_POLICY, headers=headers)
        assert response.status_code == 403

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.post("/v1/retry/policies", json=SEED_POLICY).status_code == 401

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"max_retries": 0}, "max_retries"),
            ({"max_retries": 11}, "max_retries"),
            ({"initial_delay_minutes": 0}, "initial_delay_minutes"),
            ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
            ({"max_delay_minutes": 10}, "max_delay_minutes"),
            ({"enabled_channels": []}, "enabled_channels"),
            ({"enabled_channels": ["pigeon"]}, "enabled_channels.0"),
            ({"name": "   "}, "name"),
        ],
    )
    def test_invalid_policy_is_422_naming_the_field(
        self, client: TestClient, db: Session, change: dict[str, object], field: str
    ) -> None:
        admin = make_account(db)
        response = client.post(
            "/v1/retry/policies", json={**SEED_POLICY, **change}, headers=admin.headers
        )
        assert response.status_code == 422
        assert field in {error["field"] for error in response.json()["detail"]}
        assert db.scalar(select(RetryPolicy)) is None


WINDOW = {
    "window_start": "09:00",
    "window_end": "20:00",
    "window_days": ["mon", "tue", "wed", "thu", "fri"],
    "window_skip_holidays": True,
}


class TestPolicyWindow:
    def test_admin_creates_a_policy_with_a_send_window(
        self, client: TestClient, db: Session
    ) -> None:
        # Given an admin
        admin = make_account(db)
        # When a policy with a weekday 09:00–20:00 window skipping holidays is posted
        response = client.post(
            "/v1/retry/policies", json={**SEED_POLICY, **WINDOW}, headers=admin.headers
        )
        # Then it comes back with its window, stored in local minutes and a day set
        assert response.status_code == 201, response.text
        body = response.json()
        assert {k: body[k] for k in WINDOW} == WINDOW
        policy = db.get(RetryPolicy, body["id"])
        assert policy is not None
        assert (policy.window_start_minute, policy.window_end_minute, policy.window_days) == (
            540,
            1200,
            0b0011111,
        )
        # And the active policy says the same
        active = client.get("/v1/retry/policies/active", headers=admin.headers).json()
        assert {k: active[k] for k in WINDOW} == WINDOW

    def test_without_days_the_window_opens_every_day(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        body = client.post(
            "/v1/retry/policies",
            json={**SEED_POLICY, "window_start": "8:30", "window_end": "24:00"},
            headers=admin.headers,
        ).json()
        assert (body["window_start"], body["window_end"]) == ("08:30", "24:00")
        assert body["window_days"] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        assert body["window_skip_holidays"] is False

    @pytest.mark.parametrize(
        ("change", "field", "rule"),
        [
            ({"window_start": "20:00", "window_end": "09:00"}, "window_end", "cross midnight"),
            ({"window_start": "09:00", "window_end": "09:00"}, "window_end", "after"),
            ({"window_start": "09:00"}, "window_end", "required"),
            ({"window_end": "20:00"}, "window_start", "required"),
            ({"window_days": ["mon"]}, "window_start", "required"),
            ({"window_skip_holidays": True}, "window_start", "required"),
            ({"window_start": "25:00", "window_end": "26:00"}, "window_start", "between"),
            ({"window_start": "nine", "window_end": "20:00"}, "window_start", "HH:MM"),
            ({**WINDOW, "window_days": []}, "window_days", "at least 1"),
            ({**WINDOW, "window_days": ["funday"]}, "window_days.0", "mon"),
        ],
    )
    def test_a_bad_window_is_422_naming_the_field_and_the_rule(
        self, client: TestClient, db: Session, change: dict[str, object], field: str, rule: str
    ) -> None:
        admin = make_account(db)
        response = client.post(
            "/v1/retry/policies", json={**SEED_POLICY, **change}, headers=admin.headers
        )
        assert response.status_code == 422, response.text
        errors = {error["field"]: error["msg"] for error in response.json()["detail"]}
        assert field in errors and rule in errors[field], errors
        assert db.scalar(select(RetryPolicy)) is None

    def test_admin_updates_the_window_and_open_attempts_keep_theirs(
        self, client: TestClient, db: Session
    ) -> None:
        # Given an active policy without a window and an attempt opened under it
        admin = make_account(db)
        policy = make_policy(db, admin.organization)
        attempt = make_attempt(db, admin.organization)
        # When an admin gives the policy a window
        response = client.put(
            f"/v1/retry/policies/{policy.id}",
            json={**SEED_POLICY, **WINDOW},
            headers=admin.headers,
        )
        # Then the policy has it and stays active
        assert response.status_code == 200, response.text
        assert {k: response.json()[k] for k in WINDOW} == WINDOW
        assert response.json()["is_active"] is True
        # And the open attempt keeps what it copied; a new one copies the window
        db.expire_all()
        assert db.get(RecoveryAttempt, attempt.id).send_window is None  # type: ignore[union-attr]
        newer = make_attempt(db, admin.organization)
        assert newer.send_window is not None and newer.send_window.start_minute == 540

    def test_update_is_for_admins_of_the_organization(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        policy = make_policy(db, admin.organization)
        analyst = make_account(db, role=Role.analyst, organization=admin.organization)
        stranger = make_account(db)
        url = f"/v1/retry/policies/{policy.id}"
        body = {**SEED_POLICY, **WINDOW}
        assert client.put(url, json=body, headers=analyst.headers).status_code == 403
        assert client.put(url, json=body, headers=stranger.headers).status_code == 404
        bad = {**body, "window_end": "08:00"}
        response = client.put(url, json=bad, headers=admin.headers)
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "window_end"


class TestPolicyPreview:
    def test_preview_shows_each_reminder_moved_into_the_window(
        self, client: TestClient, db: Session
    ) -> None:
        # Given an analyst and a policy of three reminders, 60 min ×2, weekdays 09:00–20:00
        analyst = make_account(db, role=Role.analyst)
        body = {
            **SEED_POLICY,
            **WINDOW,
            "max_retries": 3,
            "initial_delay_minutes": 60,
            "start": "2026-12-24T18:30:00Z",
            "customer_timezone": "Europe/Berlin",
            "customer_country": "de",
        }
        # When the schedule is previewed for a payment failing on Christmas Eve, 19:30 local
        response = client.post("/v1/retry/policies/preview", json=body, headers=analyst.headers)
        # Then the first reminder, due 20:30, goes Monday 28th at 09:00 (holidays, weekend)
        assert response.status_code == 200, response.text
        reminders = response.json()["reminders"]
        assert reminders[0] == {
            "number": 1,
            "due_at": "2026-12-24T19:30:00Z",
            "send_at": "2026-12-28T08:00:00Z",
            "local_send_at": "2026-12-28T09:00:00+01:00",
            "moved": True,
        }
        # And the next ones keep the backoff from when the previous went: 11:00, 15:00
        assert [r["local_send_at"] for r in reminders[1:]] == [
            "2026-12-28T11:00:00+01:00",
            "2026-12-28T15:00:00+01:00",
        ]
        assert [r["moved"] for r in reminders[1:]] == [False, False]
        # And nothing was saved
        assert db.scalar(select(RetryPolicy)) is None

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"customer_timezone": "Mars/Olympus"}, "customer_timezone"),
            ({"customer_country": "D1"}, "customer_country"),
            ({"start": "2026-12-24T18:30:00"}, "start"),
            ({"start": "9999-12-31T23:00:00Z"}, "start"),
            ({"window_start": "21:00"}, "window_end"),
        ],
    )
    def test_a_bad_preview_is_422_naming_the_field(
        self, client: TestClient, db: Session, change: dict[str, object], field: str
    ) -> None:
        analyst = make_account(db, role=Role.analyst)
        body = {**SEED_POLICY, **WINDOW, **change}
        response = client.post("/v1/retry/policies/preview", json=body, headers=analyst.headers)
        assert response.status_code == 422, response.text
        assert field in {error["field"] for error in response.json()["detail"]}


class TestListPolicies:
    @pytest.mark.parametrize("role", [Role.admin, Role.analyst, Role.operator])
    def test_every_role_reads_its_own_policies(
        self, client: TestClient, db: Session, role: Role
    ) -> None:
        owner = make_account(db)
        make_policy(db, owner.organization, name="Ours")
        reader = make_account(db, role=role, organization=owner.organization)
        response = client.get("/v1/retry/policies", headers=reader.headers)
        assert response.status_code == 200
        assert [p["name"] for p in response.json()] == ["Ours"]

    def test_another_organizations_policies_are_not_listed(
        self, client: TestClient, db: Session
    ) -> None:
        a = make_account(db)
        b = make_account(db)
        make_policy(db, a.organization, name="A's")
        assert client.get("/v1/retry/policies", headers=b.headers).json() == []

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get("/v1/retry/policies").status_code == 401


class TestActivePolicy:
    def test_returns_the_active_policy(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        policy = make_policy(db, admin.organization, name="Active one", max_retries=6)
        body = client.get("/v1/retry/policies/active", headers=admin.headers).json()
        assert body["id"] == policy.id
        assert body["is_default"] is False
        assert body["max_retries"] == 6
        assert set(body) >= POLICY_FIELDS

    def test_without_an_active_policy_returns_the_marked_default(
        self, client: TestClient, db: Session
    ) -> None:
        # Given an organization whose only policy was deactivated
        admin = make_account(db)
        policy = make_policy(db, admin.organization)
        client.delete(f"/v1/retry/policies/{policy.id}", headers=admin.headers)
        # When the active policy is asked for
        response = client.get("/v1/retry/policies/active", headers=admin.headers)
        # Then the built-in default comes back, marked as such
        assert response.status_code == 200
        assert response.json() == {
            "id": None,
            "org_id": admin.organization.id,
            "name": "Default (no active policy)",
            "max_retries": 3,
            "initial_delay_minutes": 60,
            "backoff_multiplier": 2.0,
            "max_delay_minutes": 1440,
            "enabled_channels": ["email"],
            "window_start": None,
            "window_end": None,
            "window_days": None,
            "window_skip_holidays": False,
            "is_active": True,
            "created_at": None,
            "updated_at": None,
            "is_default": True,
        }

    def test_another_organizations_active_policy_is_invisible(
        self, client: TestClient, db: Session
    ) -> None:
        a = make_account(db)
        b = make_account(db)
        make_policy(db, a.organization)
        assert client.get("/v1/retry/policies/active", headers=b.headers).json()["is_default"]

    def test_api_key_reads_it(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        headers = api_key_headers(db, admin.organization)
        assert client.get("/v1/retry/policies/active", headers=headers).status_code == 200

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get("/v1/retry/policies/active").status_code == 401


class TestDeactivatePolicy:
    def test_admin_deactivates_and_the_row_is_kept(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        policy = make_policy(db, admin.organization)
        response = client.delete(f"/v1/retry/policies/{policy.id}", headers=admin.headers)
        assert response.status_code == 200
        assert response.json()["is_active"] is False
        db.expire_all()
        kept = db.get(RetryPolicy, policy.id)
        assert kept is not None and kept.is_active is False

    def test_deactivating_again_changes_nothing(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        policy = make_policy(db, admin.organization)
        client.delete(f"/v1/retry/policies/{policy.id}", headers=admin.headers)
        again = client.delete(f"/v1/retry/policies/{policy.id}", headers=admin.headers)
        assert again.status_code == 200
        assert again.json()["is_active"] is False

    def test_another_organizations_policy_is_404_and_untouched(
        self, client: TestClient, db: Session
    ) -> None:
        a = make_account(db)
        b = make_account(db)
        policy = make_policy(db, a.organization)
        response = client.delete(f"/v1/retry/policies/{policy.id}", headers=b.headers)
        assert response.status_code == 404
        assert response.json() == {"detail": "retry policy not found", "type": "policy_not_found"}
        db.expire_all()
        assert db.get(RetryPolicy, policy.id).is_active is True  # type: ignore[union-attr]

    def test_unknown_policy_is_404(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        assert client.delete("/v1/retry/policies/999999", headers=admin.headers).status_code == 404

    @pytest.mark.parametrize("role", [Role.analyst, Role.operator])
    def test_other_roles_are_refused(self, client: TestClient, db: Session, role: Role) -> None:
        admin = make_account(db)
        policy = make_policy(db, admin.organization)
        other = make_account(db, role=role, organization=admin.organization)
        response = client.delete(f"/v1/retry/policies/{policy.id}", headers=other.headers)
        assert response.status_code == 403

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.delete("/v1/retry/policies/1").status_code == 401


class TestStats:
    def test_counts_the_callers_organization_only(self, client: TestClient, db: Session) -> None:
        # Given organization A with attempts and messages, and B with one attempt of its own
        a = make_account(db)
        b = make_account(db)
        first = make_attempt(db, a.organization)
        second = make_attempt(db, a.organization)
        make_attempt(db, a.organization)
        add_log(db, first, retry_number=0, channel="email", status="delivered")
        add_log(db, first, retry_number=1, channel="email", status="bounced")
        add_log(db, second, retry_number=0, channel="email", status="sent")
        make_attempt(db, b.organization)
        # When each asks for its stats
        stats_a = client.get("/v1/retry/stats", headers=a.headers).json()
        stats_b = client.get("/v1/retry/stats", headers=b.headers).json()
        # Then each sees its own rows only
        assert stats_a["total_attempts"] == 3
        assert stats_a["sent_count"] == 2
        assert stats_a["failed_count"] == 1
        assert stats_b == {
            "total_attempts": 1,
            "pending_retries": 1,
            "sent_count": 0,
            "completed_count": 0,
            "test_payment_count": 0,
            "failed_count": 0,
            "unconfirmed_count": 0,
            "outbox_count": 0,
            "avg_retry_count": 0.0,
            "recovered_after_end_count": 0,
        }

    @pytest.mark.parametrize("role", [Role.admin, Role.analyst, Role.operator])
    def test_every_role_reads_stats(self, client: TestClient, db: Session, role: Role) -> None:
        account = make_account(db, role=role)
        assert client.get("/v1/retry/stats", headers=account.headers).status_code == 200

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get("/v1/retry/stats").status_code == 401


class TestAttemptNotifications:
    def test_audit_trail_newest_first_in_the_seed_shape(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization, phone="+4915123456789")
        older = add_log(db, attempt, retry_number=0, channel="email", status="delivered")
        newer = add_log(db, attempt, retry_number=1, channel="sms", status="sent")
        response = client.get(
            f"/v1/retry/attempts/{attempt.id}/notifications", headers=admin.headers
        )
        assert response.status_code == 200
        body = response.json()
        assert [n["id"] for n in body] == [newer.id, older.id]
        assert all(set(n) == NOTIFICATION_FIELDS for n in body)
        assert body[1]["status"] == "delivered"
        assert body[1]["provider"] == "smtp"
        assert body[0]["channel"] == "sms"

    def test_attempt_without_messages_has_an_empty_trail(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        response = client.get(
            f"/v1/retry/attempts/{attempt.id}/notifications", headers=admin.headers
        )
        assert response.json() == []

    def test_another_organizations_attempt_is_404(self, client: TestClient, db: Session) -> None:
        a = make_account(db)
        b = make_account(db)
        attempt = make_attempt(db, a.organization)
        add_log(db, attempt, retry_number=0, channel="email", status="sent")
        response = client.get(f"/v1/retry/attempts/{attempt.id}/notifications", headers=b.headers)
        assert response.status_code == 404

    @pytest.mark.parametrize("role", [Role.analyst, Role.operator])
    def test_every_role_reads_it(self, client: TestClient, db: Session, role: Role) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        other = make_account(db, role=role, organization=admin.organization)
        response = client.get(
            f"/v1/retry/attempts/{attempt.id}/notifications", headers=other.headers
        )
        assert response.status_code == 200

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get("/v1/retry/attempts/1/notifications").status_code == 401


class TestRetryNow:
    def test_admin_queues_the_next_reminder(self, client: TestClient, db: Session) -> None:
        # Given an open attempt whose first reminder is an hour away
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization, due=False)
        # When an admin asks to send it now
        response = client.post(f"/v1/retry/attempts/{attempt.id}/retry-now", headers=admin.headers)
        # Then it is accepted as reminder 0 and due now
        assert response.status_code == 202, response.text
        assert response.json() == {"attempt_id": attempt.id, "retry_number": 0, "status": "queued"}
        db.expire_all()
        stored = db.get(RecoveryAttempt, attempt.id)
        assert stored is not None and stored.next_retry_at is not None
        assert stored.next_retry_at <= utc_now()

    def test_broker_down_is_503_and_changes_nothing(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given the Celery layout with its Redis down, and an attempt due in an hour
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
        get_settings.cache_clear()
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization, due=False)
        due_at = attempt.next_retry_at
        # When an admin asks to send the next reminder now
        response = client.post(f"/v1/retry/attempts/{attempt.id}/retry-now", headers=admin.headers)
        # Then the answer says the queue is down, and the schedule is as it was
        assert response.status_code == 503, response.text
        assert "Redis" in response.json()["detail"]
        db.expire_all()
        stored = db.get(RecoveryAttempt, attempt.id)
        assert stored is not None and stored.next_retry_at == due_at

    def test_final_attempt_is_409_with_the_reason(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        cancel_attempt(db, attempt=attempt, reason="test")
        db.commit()
        response = client.post(f"/v1/retry/attempts/{attempt.id}/retry-now", headers=admin.headers)
        assert response.status_code == 409
        assert AttemptStatus.cancelled in response.json()["detail"]

    def test_attempt_out_of_retries_is_409(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        attempt.retry_count = attempt.max_retries
        db.commit()
        response = client.post(f"/v1/retry/attempts/{attempt.id}/retry-now", headers=admin.headers)
        assert response.status_code == 409
        assert "reminders" in response.json()["detail"]

    def test_another_organizations_attempt_is_404(self, client: TestClient, db: Session) -> None:
        a = make_account(db)
        b = make_account(db)
        attempt = make_attempt(db, a.organization, due=False)
        response = client.post(f"/v1/retry/attempts/{attempt.id}/retry-now", headers=b.headers)
        assert response.status_code == 404

    @pytest.mark.parametrize("role", [Role.analyst, Role.operator])
    def test_other_roles_are_refused(self, client: TestClient, db: Session, role: Role) -> None:
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization, due=False)
        other = make_account(db, role=role, organization=admin.organization)
        response = client.post(f"/v1/retry/attempts/{attempt.id}/retry-now", headers=other.headers)
        assert response.status_code == 403

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.post("/v1/retry/attempts/1/retry-now").status_code == 401


class TestRoleMatrix:
    """Every role (and an API key) against every retry route: allowed, or 403."""

    @pytest.mark.parametrize("role", ROLES)
    def test_reads_are_open_to_every_role(self, client: TestClient, db: Session, role: str) -> None:
        owner = make_account(db)
        attempt = make_attempt(db, owner.organization)
        headers = headers_for(db, owner.organization, role)
        for path in (
            "/v1/retry/policies",
            "/v1/retry/policies/active",
            "/v1/retry/stats",
            f"/v1/retry/attempts/{attempt.id}/notifications",
        ):
            assert client.get(path, headers=headers).status_code == 200, path

    @pytest.mark.parametrize("role", ROLES)
    def test_writes_are_for_admins_only(self, client: TestClient, db: Session, role: str) -> None:
        owner = make_account(db)
        policy = make_policy(db, owner.organization)
        attempt = make_attempt(db, owner.organization, due=False)
        headers = headers_for(db, owner.organization, role)
        expected = {"admin": (201, 200, 202)}.get(role, (403, 403, 403))
        codes = (
            client.post("/v1/retry/policies", json=SEED_POLICY, headers=headers).status_code,
            client.delete(f"/v1/retry/policies/{policy.id}", headers=headers).status_code,
            client.post(f"/v1/retry/attempts/{attempt.id}/retry-now", headers=headers).status_code,
        )
        assert codes == expected
