"""Every statement on `daily_counts` outside its triggers: the reads, the recount, the folding
of shards.

Reads sum the shards of each (day, metric); they read at most one row per (day, metric, shard
in use that day), however many attempts and messages those days hold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from stealth_recovery.counters.definitions import SLOT_LOCK_NAMESPACE, recount_sql, slot_key
from stealth_recovery.counters.models import DailyCount


@dataclass(frozen=True)
class DailyCounts:
    """An organization's counters: `by_day[day][metric]` = n (shards summed)."""

    by_day: Mapping[date, Mapping[str, int]] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        """Each metric summed over the days."""
        summed: dict[str, int] = defaultdict(int)
        for metrics in self.by_day.values():
            for metric, n in metrics.items():
                summed[metric] += n
        return dict(summed)

    def __iter__(self) -> Iterator[date]:
        return iter(self.by_day)


def per_day(session: Session, *, organization_id: int, since: date | None = None) -> DailyCounts:
    """The organization's counters of every UTC day from `since` on (all days without it)."""
    stmt = (
        select(DailyCount.day, DailyCount.metric, func.sum(DailyCount.n))
        .where(DailyCount.organization_id == organization_id)
        .group_by(DailyCount.day, DailyCount.metric)
    )
    if since is not None:
        stmt = stmt.where(DailyCount.day >= since)
    by_day: dict[date, dict[str, int]] = defaultdict(dict)
    for day, metric, n in session.execute(stmt):
        by_day[_as_date(day)][metric] = int(n)
    return DailyCounts(by_day=dict(by_day))


def totals(session: Session, *, organization_id: int, since: date | None = None) -> dict[str, int]:
    """The organization's counters summed over every UTC day from `since` on (all without)."""
    stmt = (
        select(DailyCount.metric, func.sum(DailyCount.n))
        .where(DailyCount.organization_id == organization_id)
        .group_by(DailyCount.metric)
    )
    if since is not None:
        stmt = stmt.where(DailyCount.day >= since)
    return {metric: int(n) for metric, n in session.execute(stmt)}


def _as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _lock_counters(session: Session) -> None:
    """Wait for every transaction that has written counters to end, and keep new ones from
    writing any until this one commits (PostgreSQL; SQLite's writer is alone already). The
    caller's transaction must not have written counters before (a lock upgrade could deadlock).

    Their row changes wait too, inside their triggers: what they change after this lock is
    counted on top of what this transaction writes."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE daily_counts IN EXCLUSIVE MODE"))


def recount(session: Session, *, organization_id: int | None = None) -> int:
    """Replace the counters of one organization (or of all) by a recount of the rows: the
    repair when counters are suspected wrong. Returns the counter rows written.

    Reads every attempt and message of the organization (seconds at a million rows); counter
    writes of every organization wait meanwhile (`_lock_counters`), other work does not. Run
    it in a transaction of its own (the `recount-counters` command does).
    """
    _lock_counters(session)
    dialect = session.get_bind().dialect.name
    clear = delete(DailyCount)
    params: dict[str, int] = {}
    if organization_id is not None:
        clear = clear.where(DailyCount.organization_id == organization_id)
        params["organization_id"] = organization_id
    session.execute(clear.execution_options(synchronize_session=False))
    result = session.execute(
        text(recount_sql(dialect, one_organization=organization_id is not None)), params
    )
    return int(getattr(result, "rowcount", 0) or 0)


_SLOT = slot_key("CAST(:org AS integer)", "CAST(:slot AS integer)")
_TRY_SLOT = text(f"SELECT pg_try_advisory_xact_lock(:namespace, {_SLOT})")
_FOLD = text(
    "INSERT INTO daily_counts (organization_id, day, metric, shard, n)"
    " SELECT organization_id, day, metric, 0, SUM(n) FROM daily_counts"
    " WHERE organization_id = :org AND shard = ANY(CAST(:slots AS integer[])) AND day < :before"
    " GROUP BY organization_id, day, metric"
    " ON CONFLICT (organization_id, day, metric, shard)"
    " DO UPDATE SET n = daily_counts.n + excluded.n"
)


def _try_slot(session: Session, *, organization_id: int, slot: int) -> bool:
    params = {"namespace": SLOT_LOCK_NAMESPACE, "org": organization_id, "slot": slot}
    return bool(session.execute(_TRY_SLOT, params).scalar_one())


def fold_shards(session: Session, *, before: date) -> int:
    """Fold the shards of every day before `before` into shard 0, so a past day is one row
    per metric however many transactions wrote it at once. Returns the rows folded.

    Run daily (the expiry cleanup). It takes the slots of the shards it folds, and of shard 0,
    the way the triggers do (`counters.definitions`), never waiting for one: a shard some
    transaction is writing is left for the next day, so folding waits for no writer and no
    writer for it. SQLite writes shard 0 only: nothing to fold.
    """
    if session.get_bind().dialect.name != "postgresql":
        return 0
    in_use = session.execute(
        select(DailyCount.organization_id, DailyCount.shard)
        .where(DailyCount.shard > 0, DailyCount.day < before)
        .distinct()
    ).tuples()
    shards: dict[int, list[int]] = defaultdict(list)
    for organization_id, shard in in_use:
        shards[organization_id].append(shard)
    folded = 0
    for organization_id, numbers in sorted(shards.items()):
        if not _try_slot(session, organization_id=organization_id, slot=0):
            continue
        slots = [
            n
            for n in sorted(numbers)
            if _try_slot(session, organization_id=organization_id, slot=n)
        ]
        if not slots:
            continue
        session.execute(_FOLD, {"org": organization_id, "slots": slots, "before": before})
        result = session.execute(
            delete(DailyCount)
            .where(
                DailyCount.organization_id == organization_id,
                DailyCount.shard.in_(slots),
                DailyCount.day < before,
            )
            .execution_options(synchronize_session=False)
        )
        folded += int(getattr(result, "rowcount", 0) or 0)
    return folded
