from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, String, false, text
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
    # Drawn afresh (a random number) by every change of the organization's retry policies
    # (`retry.policy`): a process keeps the effective policy cached under the stamp it was read
    # with, and the caller's authentication reads the stamp, so a change made by any process is
    # seen by the next request everywhere. Random, not a counter: a change that rolled back
    # never leaves a number that a later change could reuse for another policy.
    policy_stamp: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default=text("0")
    )
