from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stealth_recovery.core.database import Base, JSONType, UTCDateTime
from stealth_recovery.core.models import TimestampMixin
from stealth_recovery.core.time import utc_now


class Transaction(TimestampMixin, Base):
    """A merchant's payment, identified by the merchant's own reference."""

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_ref"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        Index("ix_transactions_org_customer_email", "organization_id", "customer_email"),
        # Stripe's debt-ending events name the customer or the subscription, not the payment.
        Index("ix_transactions_org_psp_customer", "organization_id", "psp_customer_id"),
        Index("ix_transactions_org_psp_subscription", "organization_id", "psp_subscription_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    external_ref: Mapped[str] = mapped_column(String(255), nullable=False)
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_locale: Mapped[str] = mapped_column(String(16), nullable=False, default="en")
    customer_timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    description: Mapped[str | None] = mapped_column(String(500))
    psp_customer_id: Mapped[str | None] = mapped_column(String(255))
    psp_payment_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # The provider's invoice and subscription behind the payment, when there is one: the links
    # newer Stripe API versions leave out of their events are remembered here once learned.
    psp_invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    psp_subscription_id: Mapped[str | None] = mapped_column(String(255))


class FailureEvent(Base):
    """One failure of a transaction, as the gateway reported it."""

    __tablename__ = "failure_events"
    __table_args__ = (UniqueConstraint("organization_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("transactions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # Same failure reported twice (retried webhook or API call) carries the same key.
    idempotency_key: Mapped[str] = mapped_column(String(255), nullable=False)
    gateway: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(500))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    raw_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, nullable=False)


class PspEvent(Base):
    """Every provider webhook event we accepted: the idempotency record.

    Unique per organization: one Stripe account may feed the endpoints of two organizations,
    and each acts on the event once.
    """

    __tablename__ = "psp_events"
    __table_args__ = (UniqueConstraint("organization_id", "provider", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    event_id: Mapped[str] = mapped_column(String(255), nullable=False)
    event_type: Mapped[str] = mapped_column(String(128), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, nullable=False)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
