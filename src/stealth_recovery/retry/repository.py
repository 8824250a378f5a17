"""Retry policy queries."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stealth_recovery.organizations.models import Organization
from stealth_recovery.retry.models import RetryPolicy


def get_active(session: Session, *, organization_id: int) -> RetryPolicy | None:
    stmt = select(RetryPolicy).where(
        RetryPolicy.organization_id == organization_id, RetryPolicy.is_active.is_(True)
    )
    return session.scalar(stmt)


def get_active_with_stamp(
    session: Session, *, organization_id: int
) -> tuple[int, RetryPolicy | None]:
    """The organization's `policy_stamp` and its active policy (None: the default applies),
    read by one statement, so the two always belong together."""
    stmt = (
        select(Organization.policy_stamp, RetryPolicy)
        .outerjoin(
            RetryPolicy,
            (RetryPolicy.organization_id == Organization.id) & RetryPolicy.is_active.is_(True),
        )
        .where(Organization.id == organization_id)
    )
    stamp, active = session.execute(stmt).one()
    return int(stamp), active


def list_for_org(session: Session, *, organization_id: int) -> list[RetryPolicy]:
    stmt = (
        select(RetryPolicy)
        .where(RetryPolicy.organization_id == organization_id)
        .order_by(
            RetryPolicy.is_active.desc(), RetryPolicy.created_at.desc(), RetryPolicy.id.desc()
        )
    )
    return list(session.scalars(stmt))


def deactivate_all(session: Session, *, organization_id: int) -> None:
    """Deactivate the organization's policies.

    Runs before a new active policy is inserted in the same transaction; the partial unique
    index on active policies turns a concurrent second activation into an IntegrityError
    instead of two active policies.
    """
    session.execute(
        update(RetryPolicy)
        .where(RetryPolicy.organization_id == organization_id, RetryPolicy.is_active.is_(True))
        .values(is_active=False)
        .execution_options(synchronize_session="fetch")
    )
