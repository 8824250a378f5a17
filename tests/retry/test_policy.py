"""Retry policy rules: validation, one active per organization, the default."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.organizations.models import Organization
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


class TestEffectivePolicyCache:
    def test_a_change_in_another_unit_of_work_draws_a_new_stamp(self, db: Session) -> None:
        # Given the effective policy read with the organization's stamp
        org = make_account(db).organization
        first = make_policy(db, org, max_retries=4)
        stamp = _stamp(db, org.id)
        effective = policy_service.effective_policy(db, organization_id=org.id, stamp=stamp)
        assert effective.policy_id == first.id
        # When another unit of work replaces the policy
        with session_scope() as other:
            second_id = policy_service.create_policy(other, organization_id=org.id, **VALID).id
        # Then the stamp changed and the policy read with it is the new one
        after_create = _stamp(db, org.id)
        assert after_create != stamp
        effective = policy_service.effective_policy(db, organization_id=org.id, stamp=after_create)
        assert effective.policy_id == second_id
        # And after a deactivation elsewhere, the default
        with session_scope() as other:
            policy_service.deactivate_policy(other, organization_id=org.id, policy_id=second_id)
        after_deactivate = _stamp(db, org.id)
        assert after_deactivate not in (stamp, after_create)
        latest = policy_service.effective_policy(db, organization_id=org.id, stamp=after_deactivate)
        assert latest.is_default

    def test_a_change_that_rolled_back_leaves_the_policy_in_force(self, db: Session) -> None:
        # Given an organization's policy, read once
        account = make_account(db)
        org = account.organization
        active = make_policy(db, org, max_retries=4)
        policy_service.effective_policy(db, organization_id=org.id, stamp=_stamp(db, org.id))
        db.commit()
        # When a change is read inside its own unit of work, which then rolls back
        with pytest.raises(RuntimeError), session_scope() as other:
            policy_service.create_policy(other, organization_id=org.id, **VALID)
            policy_service.effective_policy(other, organization_id=org.id)
            raise RuntimeError("rolled back")
        # Then the stamp read now still gives the policy in force
        effective = policy_service.effective_policy(
            db, organization_id=org.id, stamp=_stamp(db, org.id)
        )
        assert effective.policy_id == active.id


def _stamp(db: Session, organization_id: int) -> int:
    db.commit()  # a fresh snapshot
    return int(
        db.scalar(select(Organization.policy_stamp).where(Organization.id == organization_id)) or 0
    )
