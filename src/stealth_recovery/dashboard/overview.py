"""What the overview page shows: the stats cards, recovered revenue and the three charts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from stealth_recovery.core.time import utc_now
from stealth_recovery.counters import repository as counters
from stealth_recovery.counters.repository import DailyCounts
from stealth_recovery.dashboard import charts
from stealth_recovery.dashboard.charts import STATUS_COLOURS, Chart, Series
from stealth_recovery.notifications.models import Channel, NotificationStatus
from stealth_recovery.recovery.models import FINAL_STATUSES, AttemptStatus

if TYPE_CHECKING:
    from stealth_recovery.retry.stats import RetryStats

PERIODS = (7, 30, 90)
# Charts in a half-width column get a narrower drawing, so their text stays readable.
HALF_WIDTH = 480
_OUTCOMES = (
    AttemptStatus.completed,
    AttemptStatus.opened,
    AttemptStatus.sent,
    AttemptStatus.created,
    AttemptStatus.expired,
    AttemptStatus.cancelled,
)
_DELIVERY = (
    NotificationStatus.delivered,
    NotificationStatus.sent,
    NotificationStatus.unconfirmed,
    NotificationStatus.handing_over,
    NotificationStatus.pending,
    NotificationStatus.cancelled,
    NotificationStatus.bounced,
    NotificationStatus.failed,
)
CHANNEL_LABELS: dict[str, str] = {
    Channel.email.value: "Email",
    Channel.sms.value: "SMS",
    Channel.whatsapp.value: "WhatsApp",
}


@dataclass(frozen=True)
class ChannelChart:
    channel: str
    label: str
    chart: Chart


@dataclass(frozen=True)
class Overview:
    stats: RetryStats
    revenue: dict[str, int]
    recovered: int
    settled: int
    period_days: int
    outcomes: Chart
    channels: list[ChannelChart]
    by_step: Chart

    @property
    def recovery_rate(self) -> float | None:
        return self.recovered / self.settled if self.settled else None


def _days(period_days: int) -> list[date]:
    today = utc_now().date()
    return [today - timedelta(days=n) for n in range(period_days - 1, -1, -1)]


def _step_label(step: int) -> str:
    if step == 0:
        return "Before any"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(step if step < 20 else step % 10, "th")
    return f"After {step}{suffix}"


def _short_step_label(step: int) -> str:
    return "Before" if step == 0 else _step_label(step).removeprefix("After ")


def _with_phone_drawing(chart: Chart, phone: Chart) -> Chart:
    """`chart` with `phone`'s drawing (the same data at `charts.PHONE_WIDTH`) for phones."""
    return replace(chart, phone_svg=phone.svg)


def _per_day(counts: DailyCounts, days: list[date], metric: str) -> list[int]:
    return [counts.by_day.get(day, {}).get(metric, 0) for day in days]


def _non_test(totals: dict[str, int], status: str) -> int:
    """Attempts in `status`, test payments excluded (they are never a recovery)."""
    return totals.get(f"a:s:{status}", 0) - totals.get(f"a:test:{status}", 0)


def build_overview(session: Session, *, organization_id: int, period_days: int) -> Overview:
    """Everything the overview shows, for the caller's organization only.

    Every figure covers the last `period_days` UTC days (today included): attempts opened and
    messages written since that midnight. All of it comes from one read of the organization's
    daily counters for those days (`counters.repository.per_day`): the stats cards are
    `retry.stats.stats_from_counts` of the same read.
    """
    from stealth_recovery.retry.stats import stats_from_counts

    days = _days(period_days)
    labels = charts.day_labels(days)
    counts = counters.per_day(session, organization_id=organization_id, since=days[0])
    totals = counts.totals()

    outcome_series = [
        Series(s.capitalize(), STATUS_COLOURS[s], _per_day(counts, days, f"a:s:{s}"))
        for s in _OUTCOMES
    ]
    outcomes_label = "Attempts opened per day, by outcome"
    outcomes = _with_phone_drawing(
        charts.stacked_bars(label=outcomes_label, categories=labels, series=outcome_series),
        charts.stacked_bars(
            label=outcomes_label,
            categories=labels,
            series=outcome_series,
            width=charts.PHONE_WIDTH,
        ),
    )

    channel_charts = []
    for channel in (c.value for c in Channel):
        if not any(n for m, n in totals.items() if m.startswith(f"m:{channel}:")):
            continue
        name = CHANNEL_LABELS.get(channel, channel)
        series = [
            Series(s.capitalize(), STATUS_COLOURS[s], _per_day(counts, days, f"m:{channel}:{s}"))
            for s in _DELIVERY
        ]
        drawings = [
            charts.stacked_bars(
                label=f"{name} messages per day, by status",
                categories=labels,
                series=series,
                tooltip_prefix=f"{name} · ",
                width=width,
            )
            for width in (HALF_WIDTH, charts.PHONE_WIDTH)
        ]
        channel_charts.append(
            ChannelChart(channel=channel, label=name, chart=_with_phone_drawing(*drawings))
        )

    steps = {
        int(m.removeprefix("a:step:")): n
        for m, n in totals.items()
        if m.startswith("a:step:") and n
    }
    last_step = max([3, *steps])
    step_numbers = list(range(0, last_step + 1))
    step_values = [steps.get(n, 0) for n in step_numbers]
    by_step = _with_phone_drawing(
        charts.bars(
            label="Payments recovered, by reminder",
            categories=[_step_label(n) for n in step_numbers],
            values=step_values,
            colour=STATUS_COLOURS["completed"],
            width=HALF_WIDTH,
        ),
        charts.bars(
            label="Payments recovered, by reminder",
            categories=[_short_step_label(n) for n in step_numbers],
            values=step_values,
            colour=STATUS_COLOURS["completed"],
            width=charts.PHONE_WIDTH,
        ),
    )

    revenue = sorted(
        ((m.removeprefix("a:rev:"), n) for m, n in totals.items() if m.startswith("a:rev:") and n),
        key=lambda item: -item[1],
    )
    # Every figure is about the same period: attempts opened (and messages written) since then.
    return Overview(
        stats=stats_from_counts(totals),
        revenue=dict(revenue),
        recovered=_non_test(totals, AttemptStatus.completed),
        settled=sum(_non_test(totals, s) for s in FINAL_STATUSES),
        period_days=period_days,
        outcomes=outcomes,
        channels=channel_charts,
        by_step=by_step,
    )
