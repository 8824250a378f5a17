"""Every error body is `{"detail": …, "type": …}`: `type` names the error class, stable, so
clients branch on it rather than on the message."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import stealth_recovery
from stealth_recovery.core.errors import DomainError
from stealth_recovery.recovery.service import cancel_attempt
from stealth_recovery.retry.policy import PolicyInvalid, validate
from tests.support.builders import make_account, make_attempt


def _all_error_classes() -> list[type[DomainError]]:
    for module in pkgutil.walk_packages(stealth_recovery.__path__, "stealth_recovery."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)
    found: list[type[DomainError]] = []
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


class TestErrorTypes:
    def test_each_error_class_has_its_own_snake_case_type(self) -> None:
        classes = _all_error_classes()
        types = [cls.type for cls in classes]
        assert len(classes) > 30
        assert len(set(types)) == len(types), sorted(types)
        assert all(re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", t) for t in types)

    def test_a_domain_error_names_its_class(self, client: TestClient, db: Session) -> None:
        # Given a cancelled attempt
        admin = make_account(db)
        attempt = make_attempt(db, admin.organization)
        cancel_attempt(db, attempt=attempt, reason="test")
        db.commit()
        # When it is cancelled again, and its pay link is looked up
        again = client.post(
            f"/v1/attempts/{attempt.id}/cancel", json={"reason": "x"}, headers=admin.headers
        )
        link = client.get(f"/v1/recoveries/by_token/{attempt.token}")
        # Then each body says which error it is
        assert (again.status_code, again.json()["type"]) == (409, "attempt_not_open")
        assert again.json()["detail"] == "attempt is already cancelled"
        assert (link.status_code, link.json()["type"]) == (410, "pay_link_cancelled")

    def test_validation_and_framework_errors_have_a_type_too(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        invalid = client.post("/v1/events/payment_failed", json={}, headers=admin.headers)
        anonymous = client.get("/v1/attempts")
        nowhere = client.get("/v1/nowhere")
        wrong_method = client.delete("/v1/attempts")
        assert (invalid.status_code, invalid.json()["type"]) == (422, "invalid_input")
        assert isinstance(invalid.json()["detail"], list)
        assert (anonymous.status_code, anonymous.json()["type"]) == (401, "not_authenticated")
        assert (nowhere.status_code, nowhere.json()["type"]) == (404, "not_found")
        assert (wrong_method.status_code, wrong_method.json()["type"]) == (
            405,
            "method_not_allowed",
        )

    def test_a_policy_rule_is_policy_invalid_and_names_its_field(self) -> None:
        with pytest.raises(PolicyInvalid) as caught:
            validate(
                name="Email and fax",
                max_retries=3,
                initial_delay_minutes=60,
                backoff_multiplier=2,
                max_delay_minutes=600,
                enabled_channels=["email", "fax"],
            )
        assert (caught.value.type, caught.value.field) == ("policy_invalid", "enabled_channels")
        assert caught.value.status_code == 422

    def test_a_refusal_before_any_route_has_a_type(self, client: TestClient) -> None:
        response = client.get("/v1/attempts?q=%00")
        assert (response.status_code, response.json()["type"]) == (400, "invalid_url")
