from __future__ import annotations

from sqlalchemy import Boolean, String, false
from sqlalchemy.orm import Mapped, mapped_column

from stealth_recovery.core.database import Base
from stealth_recovery.core.models import TimestampMixin


class Organization(TimestampMixin, Base):
    """A merchant. Owns every other row; every query is scoped to one."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    slug: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # Made by `stealth-recovery demo`: its pay page completes payments without moving money.
    is_test: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
