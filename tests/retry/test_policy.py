"""Retry policy rules: validation, one active per organization, the default."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.retry import policy as policy_service
from stealth_recovery.retry.models import RetryPolicy
from tests.support.builders import make_account, make_policy

VALID = {
    "name": "Aggressive Recovery",
    "max_retries": 5,
    "initial_delay_minutes": 30,
    "backoff_multiplier": 2.0,
    "max_delay_minutes": 720,
    "enabled_channels": ["email", "sms"],
}


class TestValidate:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("name", ""),
            ("name", "x" * 129),
            ("max_retries", 0),
            ("max_retries", 11),
            ("initial_delay_minutes", 0),
            ("backoff_multiplier", 0.5),
            ("max_delay_minutes", 10),
            ("enabled_channels", []),
            ("enabled_channels", ["email", "pigeon"]),
        ],
    )
    def test_each_rule_names_its_field(self, field: str, value: object) -> None:
        with pytest.raises(InvalidInput) as error:
            policy_service.validate(**{**VALID, field: value})  # type: ignore[arg-type]
        assert error.value.field == field

    def test_channels_are_deduplicated_in_order(self) -> None:
        channels = policy_service.validate(**{**VALID, "enabled_channels": ["sms", "email", "sms"]})  # type: ignore[arg-type]
        assert channels == ["sms", "email"]


class TestActivePolicy:
    def test_creating_a_policy_activates_it_and_deactivates_the_rest(self, db: Session) -> None:
        account = make_account(db)
        first = make_policy(db, account.organization, name="First")
        second = make_policy(db, account.organization, name="Second")
        db.refresh(first)
        assert (first.is_active, second.is_active) == (False, True)
        effective = policy_service.effective_policy(db, organization_id=account.organization.id)
        assert effective.policy_id == second.id

    def test_without_an_active_policy_the_default_applies(self, db: Session) -> None:
        account = make_account(db)
        policy = make_policy(db, account.organization)
        policy_service.deactivate_policy(
            db, organization_id=account.organization.id, policy_id=policy.id
        )
        db.commit()
        effective = policy_service.effective_policy(db, organization_id=account.organization.id)
        assert effective.is_default
        assert (effective.schedule.max_retries, effective.schedule.initial_delay_minutes) == (3, 60)
        assert effective.enabled_channels == ("email",)
        # The deactivated row is kept
        assert db.scalar(select(func.count()).select_from(RetryPolicy)) == 1

    def test_an_invalid_policy_leaves_the_active_one_untouched(self, db: Session) -> None:
        account = make_account(db)
        active = make_policy(db, account.organization)
        with pytest.raises(InvalidInput):
            policy_service.create_policy(
                db,
                organization_id=account.organization.id,
                **{**VALID, "max_retries": 0},  # type: ignore[arg-type]
            )
        db.rollback()
        db.refresh(active)
        assert active.is_active

    def test_other_organizations_policy_is_not_found(self, db: Session) -> None:
        from stealth_recovery.core.errors import NotFound

        a = make_account(db)
        b = make_account(db)
        policy = make_policy(db, a.organization)
        with pytest.raises(NotFound):
            policy_service.deactivate_policy(
                db, organization_id=b.organization.id, policy_id=policy.id
            )

    def test_reactivating_an_old_policy(self, db: Session) -> None:
        account = make_account(db)
        old = make_policy(db, account.organization, name="Old")
        new = make_policy(db, account.organization, name="New")
        policy_service.activate_policy(
            db, organization_id=account.organization.id, policy_id=old.id
        )
        db.commit()
        db.refresh(new)
        db.refresh(old)
        assert (old.is_active, new.is_active) == (True, False)
