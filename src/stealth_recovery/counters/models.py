from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from stealth_recovery.core.database import Base


class DailyCount(Base):
    """One counter: how many rows of an organization, of one UTC day, count under `metric`
    (or the sum of a value, for `a:retries` and `a:rev:<currency>`), in one shard.

    Written only by the triggers and the recount (`counters.definitions`); read summed over
    shards (`counters.repository`).
    """

    __tablename__ = "daily_counts"

    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, nullable=False)
