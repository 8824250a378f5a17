from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from stealth_recovery.core.database import Base, JSONType, UTCDateTime
from stealth_recovery.core.models import TimestampMixin


class EventType(StrEnum):
    """The events a merchant's endpoint may subscribe to (docs/webhooks.md)."""

    attempt_opened = "attempt.opened"
    reminder_sent = "attempt.reminder_sent"
    pay_link_opened = "attempt.pay_link_opened"
    recovered = "attempt.recovered"
    recovered_after_end = "attempt.recovered_after_end"
    cancelled = "attempt.cancelled"
    expired = "attempt.expired"
    message_bounced = "message.bounced"


class DeliveryStatus(StrEnum):
    pending = "pending"  # waiting for its next try (or being tried under a lease)
    succeeded = "succeeded"  # the endpoint answered 2xx
    failed = "failed"  # every try of the schedule failed, or the endpoint was disabled


class WebhookEndpoint(TimestampMixin, Base):
    """Where an organization wants its events, and the secret they are signed with.

    Secrets are stored encrypted (like Stripe keys). During a rotation the previous secret
    still signs, beside the new one, until `previous_secret_expires_at`.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    description: Mapped[str | None] = mapped_column(String(200))
    # Event type names; empty means every type.
    event_types: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    secret: Mapped[str] = mapped_column(Text, nullable=False)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enabled: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("true")
    )
    # Set at the first failure after a success; cleared by a success.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(String(500))


class WebhookEvent(Base):
    """One thing that happened, written in the transaction of the change it describes."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The stable id the merchant sees (`webhook-id` header and `id` in the body): "evt_…".
    public_id: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict[str, object]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


_PENDING_SQL = "status = 'pending'"


class WebhookDelivery(Base):
    """An event on its way to one endpoint; `next_attempt_at` is when it is due (or, while a
    worker holds it, the end of that worker's lease)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text(_PENDING_SQL),
            sqlite_where=text(_PENDING_SQL),
        ),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), nullable=False, index=True
    )
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=DeliveryStatus.pending)
    attempts: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default=text("0")
    )
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replay: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class WebhookAttempt(Base):
    """One try of a delivery: what the endpoint answered, and how fast."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False, index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    succeeded: Mapped[bool] = mapped_column(Boolean, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[str | None] = mapped_column(String(500))
