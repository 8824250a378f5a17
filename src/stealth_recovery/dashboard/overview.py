"""What the overview page shows: the stats cards, recovered revenue and the three charts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from stealth_recovery.core.time import utc_now
from stealth_recovery.dashboard import charts, repository
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


def build_overview(session: Session, *, organization_id: int, period_days: int) -> Overview:
    """Everything the overview shows, for the caller's organization only.

    Every figure covers the last `period_days` UTC days (today included): attempts opened and
    messages written since that midnight.
    """
    from stealth_recovery.retry.stats import compute_stats

    days = _days(period_days)
    since = utc_now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=period_days - 1
    )
    labels = charts.day_labels(days)
    index = {d: i for i, d in enumerate(days)}

    per_status: dict[str, list[int]] = {s: [0] * len(days) for s in _OUTCOMES}
    for row in repository.attempts_per_day_by_status(
        session, organization_id=organization_id, since=since
    ):
        if row.day in index and row.key in per_status:
            per_status[row.key][index[row.day]] += row.count
    outcomes = charts.stacked_bars(
        label="Attempts opened per day, by outcome",
        categories=labels,
        series=[Series(s.capitalize(), STATUS_COLOURS[s], per_status[s]) for s in _OUTCOMES],
    )

    per_channel: dict[str, dict[str, list[int]]] = {}
    for m in repository.messages_per_day(session, organization_id=organization_id, since=since):
        if m.day not in index:
            continue
        statuses = per_channel.setdefault(m.channel, {s: [0] * len(days) for s in _DELIVERY})
        if m.status in statuses:
            statuses[m.status][index[m.day]] += m.count
    channel_charts = [
        ChannelChart(
            channel=channel,
            label=CHANNEL_LABELS.get(channel, channel),
            chart=charts.stacked_bars(
                label=f"{CHANNEL_LABELS.get(channel, channel)} messages per day, by status",
                categories=labels,
                series=[
                    Series(s.capitalize(), STATUS_COLOURS[s], per_channel[channel][s])
                    for s in _DELIVERY
                ],
                tooltip_prefix=f"{CHANNEL_LABELS.get(channel, channel)} · ",
                width=HALF_WIDTH,
            ),
        )
        for channel in (c.value for c in Channel)
        if channel in per_channel
    ]

    steps = repository.recoveries_by_step(session, organization_id=organization_id, since=since)
    last_step = max([3, *steps])
    step_numbers = list(range(0, last_step + 1))
    by_step = charts.bars(
        label="Payments recovered, by reminder",
        categories=[_step_label(n) for n in step_numbers],
        values=[steps.get(n, 0) for n in step_numbers],
        colour=STATUS_COLOURS["completed"],
        width=HALF_WIDTH,
    )

    # Every figure is about the same period: attempts opened (and messages written) since then.
    counts = repository.status_counts(session, organization_id=organization_id, since=since)
    return Overview(
        stats=compute_stats(session, organization_id=organization_id, since=since),
        revenue=repository.recovered_revenue(session, organization_id=organization_id, since=since),
        recovered=counts.get(AttemptStatus.completed, 0),
        settled=sum(counts.get(s, 0) for s in FINAL_STATUSES),
        period_days=period_days,
        outcomes=outcomes,
        channels=channel_charts,
        by_step=by_step,
    )
