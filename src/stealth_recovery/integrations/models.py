from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stealth_recovery.core.database import Base
from stealth_recovery.core.models import TimestampMixin


class StripeConnection(TimestampMixin, Base):
    """An organization's Stripe credentials, encrypted at rest with a key derived from settings."""

    __tablename__ = "stripe_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    secret_key_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    webhook_secret_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    secret_key_last4: Mapped[str] = mapped_column(String(4), nullable=False)
