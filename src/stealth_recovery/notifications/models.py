from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from stealth_recovery.core.database import Base, JSONType, UTCDateTime
from stealth_recovery.core.models import TimestampMixin
from stealth_recovery.core.time import utc_now


class Channel(StrEnum):
    email = "email"
    sms = "sms"
    whatsapp = "whatsapp"


class NotificationStatus(StrEnum):
    pending = "pending"  # claimed, not handed over yet (or due again after a transient error)
    handing_over = "handing_over"  # marked just before the hand-over began; outcome not known yet
    sent = "sent"
    delivered = "delivered"
    failed = "failed"
    bounced = "bounced"
    unconfirmed = "unconfirmed"  # handed over, no answer (timeout, worker died): never resent
    cancelled = "cancelled"  # never handed over: the attempt ended (paid, expired) first


# Rows not settled yet: the engine (or a dead worker) still holds them.
UNSETTLED_STATUSES: tuple[str, ...] = (NotificationStatus.pending, NotificationStatus.handing_over)
_UNSETTLED_SQL = "status IN ('pending', 'handing_over')"

# A status only moves forward: a late or repeated callback never lowers it.
STATUS_RANK: dict[str, int] = {
    NotificationStatus.pending: 0,
    NotificationStatus.handing_over: 0,
    NotificationStatus.sent: 1,
    NotificationStatus.unconfirmed: 1,
    NotificationStatus.delivered: 2,
    NotificationStatus.failed: 2,
    NotificationStatus.bounced: 2,
    NotificationStatus.cancelled: 2,
}


class NotificationLog(TimestampMixin, Base):
    """One message of one reminder step on one channel.

    The row is written `pending` before the provider is called; the unique key
    (attempt, retry number, channel) makes any repeat of the same step a no-op.
    """

    __tablename__ = "notification_logs"
    __table_args__ = (
        UniqueConstraint("attempt_id", "retry_number", "channel"),
        CheckConstraint("channel IN ('email', 'sms', 'whatsapp')", name="channel"),
        CheckConstraint(
            "status IN ('pending', 'handing_over', 'sent', 'delivered', 'failed', 'bounced',"
            " 'unconfirmed', 'cancelled')",
            name="status",
        ),
        Index("ix_notification_logs_provider_message", "provider", "provider_message_id"),
        # The few rows still in the engine's hands: the queue pass settles those of ended steps.
        Index(
            "ix_notification_logs_unsettled",
            "attempt_id",
            postgresql_where=text(_UNSETTLED_SQL),
            sqlite_where=text(_UNSETTLED_SQL),
        ),
        Index("ix_notification_logs_org_created", "organization_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    attempt_id: Mapped[int] = mapped_column(
        ForeignKey("recovery_attempts.id", ondelete="CASCADE"), nullable=False
    )
    retry_number: Mapped[int] = mapped_column(Integer, nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    recipient: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default=NotificationStatus.pending
    )
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    error_message: Mapped[str | None] = mapped_column(Text)
    # How many times a worker took this row to the provider (>1 only after a lease expired).
    send_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxMessage(Base):
    """A message the local outbox kept instead of sending: rendered in full, never delivered.

    The local set-up has no mail server or SMS/WhatsApp account; the outbox shows on the
    dashboard exactly what the customer would have received. Its log row has provider `outbox`.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_org_channel_created", "organization_id", "channel", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    log_id: Mapped[int] = mapped_column(
        ForeignKey("notification_logs.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    attempt_id: Mapped[int] = mapped_column(Integer, nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    subject: Mapped[str | None] = mapped_column(Text)  # email only
    body_text: Mapped[str] = mapped_column(Text, nullable=False)  # email text / SMS / WA preview
    body_html: Mapped[str | None] = mapped_column(Text)  # email only
    sms_segments: Mapped[int | None] = mapped_column(Integer)
    template_name: Mapped[str | None] = mapped_column(String(512))  # WhatsApp only
    template_language: Mapped[str | None] = mapped_column(String(16))
    template_parameters: Mapped[list[str] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, nullable=False)


class HeldDeliveryStatus(Base):
    """A delivery-status callback for a message id no log row carries yet.

    Providers may call back before the worker has recorded the id their API answered with (the
    callback can even arrive before that answer). The status waits here and is applied when the
    send is recorded (`service.apply_held_statuses`); one never matched is dropped after
    `service.HOLD_FOR`.
    """

    __tablename__ = "held_delivery_statuses"
    __table_args__ = (
        CheckConstraint("status IN ('delivered', 'failed', 'bounced')", name="status"),
        Index("ix_held_delivery_statuses_message", "provider", "provider_message_id"),
        Index("ix_held_delivery_statuses_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    provider_message_id: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error_message: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
