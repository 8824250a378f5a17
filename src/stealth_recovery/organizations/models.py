from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from stealth_recovery.core.database import Base
from stealth_recovery.core.models import TimestampMixin


class Organization(TimestampMixin, Base):
    """A merchant. Owns every other row; every query is scoped to one."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    slug: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
