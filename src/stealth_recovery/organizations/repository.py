from __future__ import annotations

import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stealth_recovery.organizations.models import Organization


def get_by_slug(session: Session, slug: str) -> Organization | None:
    return session.scalar(select(Organization).where(Organization.slug == slug))


def slug_taken(session: Session, slug: str) -> bool:
    return session.scalar(select(Organization.id).where(Organization.slug == slug)) is not None


def new_policy_stamp(session: Session, *, organization_id: int) -> None:
    """Mark a change of the organization's retry policies (in the caller's unit of work): its
    `policy_stamp` becomes a new random number. Call it after the change is flushed.

    The row stays locked until the change commits, so two changes of one organization's
    policies run one after the other.
    """
    session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(policy_stamp=secrets.randbits(62) + 1)
        .execution_options(synchronize_session=False)
    )
