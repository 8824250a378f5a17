from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from stealth_recovery.core.database import Base, JSONType, UTCDateTime
from stealth_recovery.core.models import TimestampMixin
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.recovery.windows import SendWindow


class AttemptStatus(StrEnum):
    created = "created"
    sent = "sent"
    opened = "opened"
    completed = "completed"
    expired = "expired"
    cancelled = "cancelled"


OPEN_STATUSES: tuple[str, ...] = (AttemptStatus.created, AttemptStatus.sent, AttemptStatus.opened)
FINAL_STATUSES: tuple[str, ...] = (
    AttemptStatus.completed,
    AttemptStatus.expired,
    AttemptStatus.cancelled,
)
# The open statuses as SQL: partial indexes, and ON CONFLICT inferring them (no parameters).
OPEN_SQL = "status IN ('created', 'sent', 'opened')"
_EXHAUSTED_SQL = OPEN_SQL + " AND retry_count >= max_retries"
_CHECKOUT_TO_CLOSE_SQL = (
    "checkout_session_id IS NOT NULL AND checkout_closed_at IS NULL "
    "AND status IN ('completed', 'expired', 'cancelled')"
)


# A send window's columns hold together: all unset (no window) or a valid window (start before
# end within the day, at least one day). On retry policies as a check; attempts copy a policy.
WINDOW_CHECK_SQL = (
    "window_start_minute IS NULL AND window_end_minute IS NULL AND window_days IS NULL "
    "OR window_start_minute >= 0 AND window_start_minute < window_end_minute "
    "AND window_end_minute <= 1440 AND window_days BETWEEN 1 AND 127"
)


class WindowColumns:
    """The send window of a policy, and of an attempt that copied it (`recovery.windows`)."""

    # Local minutes after midnight, start inclusive, end exclusive; NULL: no window.
    window_start_minute: Mapped[int | None] = mapped_column(Integer)
    window_end_minute: Mapped[int | None] = mapped_column(Integer)
    # ISO weekdays as bits: 1 Monday, 2 Tuesday … 64 Sunday (31: Monday to Friday).
    window_days: Mapped[int | None] = mapped_column(Integer)
    window_skip_holidays: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    @property
    def send_window(self) -> SendWindow | None:
        if self.window_start_minute is None or self.window_end_minute is None:
            return None
        return SendWindow(
            start_minute=self.window_start_minute,
            end_minute=self.window_end_minute,
            days=self.window_days or 0,
            skip_holidays=self.window_skip_holidays,
        )


def window_values(window: SendWindow | None) -> dict[str, object]:
    """The columns of `WindowColumns` for a window (all unset for None)."""
    if window is None:
        return {
            "window_start_minute": None,
            "window_end_minute": None,
            "window_days": None,
            "window_skip_holidays": False,
        }
    return {
        "window_start_minute": window.start_minute,
        "window_end_minute": window.end_minute,
        "window_days": window.days,
        "window_skip_holidays": window.skip_holidays,
    }


class RecoveryAttempt(WindowColumns, TimestampMixin, Base):
    """One recovery of one failed payment: a pay link plus its reminder schedule.

    The retry policy in force when the attempt opened is copied onto it, so editing a policy
    later never changes attempts already running.
    """

    __tablename__ = "recovery_attempts"
    __table_args__ = (
        CheckConstraint(
            "status IN ('created', 'sent', 'opened', 'completed', 'expired', 'cancelled')",
            name="status",
        ),
        CheckConstraint("retry_count >= 0 AND retry_count <= max_retries", name="retry_count"),
        # The retry queue's access path: due open attempts, oldest first; `expires_at` rides
        # along so expiring due rows is answered from the index.
        Index(
            "ix_recovery_attempts_due",
            "next_retry_at",
            "expires_at",
            postgresql_where=text(OPEN_SQL),
            sqlite_where=text(OPEN_SQL),
        ),
        # Open attempts whose last reminder is out: the queue cancels them when the grace ends.
        Index(
            "ix_recovery_attempts_exhausted",
            "next_retry_at",
            postgresql_where=text(_EXHAUSTED_SQL),
            sqlite_where=text(_EXHAUSTED_SQL),
        ),
        # At most one open attempt per transaction: ingestion races resolve here.
        Index(
            "uq_recovery_attempts_open_transaction",
            "transaction_id",
            unique=True,
            postgresql_where=text(OPEN_SQL),
            sqlite_where=text(OPEN_SQL),
        ),
        # Ended attempts whose Checkout Session may still be open at Stripe: expired there.
        Index(
            "ix_recovery_attempts_checkout_to_close",
            "id",
            postgresql_where=text(_CHECKOUT_TO_CLOSE_SQL),
            sqlite_where=text(_CHECKOUT_TO_CLOSE_SQL),
        ),
        # The listing's cursor, newest first: `id` breaks ties between equal timestamps, so a
        # page starts inside the index however many attempts share one instant.
        Index("ix_recovery_attempts_org_created_id", "organization_id", "created_at", "id"),
        Index("ix_recovery_attempts_org_status", "organization_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("transactions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    failure_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("failure_events.id", ondelete="SET NULL")
    )
    token: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=AttemptStatus.created)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_reason: Mapped[str | None] = mapped_column(String(255))

    retry_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # While a step is claimed this holds the lease end: a dead worker's step comes due again.
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Who holds the step's lease (`next_retry_at` is its end while claimed): the queue pass's
    # claim token, then the worker process sending it. NULL when nobody holds it.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    max_retries: Mapped[int] = mapped_column(Integer, nullable=False)

    policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("retry_policies.id", ondelete="SET NULL")
    )
    initial_delay_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    backoff_multiplier: Mapped[float] = mapped_column(Float, nullable=False)
    max_delay_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    enabled_channels: Mapped[list[str]] = mapped_column(JSONType, nullable=False)

    decline_code: Mapped[str | None] = mapped_column(String(64))
    decline_category: Mapped[str] = mapped_column(
        String(16), nullable=False, default=DeclineCategory.soft
    )
    checkout_session_id: Mapped[str | None] = mapped_column(String(255))
    # Completed on the pay page's test path: no money moved; never counted as recovered.
    test_payment: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # When the Checkout Session was expired at Stripe (or found closed) after the attempt ended.
    checkout_closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The payment that completed the attempt (`recovery.service.PaidVia`): "debt" (the invoice /
    # payment intent itself, e.g. Stripe's own retry), "checkout:<payment intent or session id>",
    # "test_payment", "api" or "demo"; None only on attempts completed before it was recorded.
    paid_via: Mapped[str | None] = mapped_column(String(255))
    # Money that came in after the attempt had ended (cancelled, expired): recovered late.
    paid_after_end: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # A second payment for an attempt already completed: flagged for the merchant to refund.
    second_payment_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    second_payment_ref: Mapped[str | None] = mapped_column(String(255))
    # Which reminder step was last out when the customer paid (analytics).
    completed_after_step: Mapped[int | None] = mapped_column(Integer)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES
