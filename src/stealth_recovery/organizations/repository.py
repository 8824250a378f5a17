from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.organizations.models import Organization


def get_by_slug(session: Session, slug: str) -> Organization | None:
    return session.scalar(select(Organization).where(Organization.slug == slug))


def slug_taken(session: Session, slug: str) -> bool:
    return session.scalar(select(Organization.id).where(Organization.slug == slug)) is not None
