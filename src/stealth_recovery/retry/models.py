from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from stealth_recovery.core.database import Base, JSONType
from stealth_recovery.core.models import TimestampMixin
from stealth_recovery.recovery.models import WINDOW_CHECK_SQL, WindowColumns


class RetryPolicy(WindowColumns, TimestampMixin, Base):
    """How many reminders, how far apart, on which channels, in which send window (optional).
    One active per organization."""

    __tablename__ = "retry_policies"
    __table_args__ = (
        CheckConstraint("max_retries BETWEEN 1 AND 10", name="max_retries"),
        CheckConstraint("initial_delay_minutes >= 1", name="initial_delay"),
        CheckConstraint("backoff_multiplier >= 1", name="backoff_multiplier"),
        CheckConstraint("max_delay_minutes >= initial_delay_minutes", name="max_delay"),
        CheckConstraint(WINDOW_CHECK_SQL, name="send_window"),
        Index(
            "uq_retry_policies_one_active",
            "organization_id",
            unique=True,
            postgresql_where=text("is_active"),
            sqlite_where=text("is_active = 1"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    max_retries: Mapped[int] = mapped_column(Integer, nullable=False)
    initial_delay_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    backoff_multiplier: Mapped[float] = mapped_column(Float, nullable=False)
    max_delay_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    enabled_channels: Mapped[list[str]] = mapped_column(JSONType, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
