"""The reminder schedule: delay before reminder k = min(initial × multiplier^k, max_delay),
each reminder moved into the policy's send window (`recovery.windows`) when it has one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from stealth_recovery.recovery.windows import UTC_PLACE, Place, SendWindow, next_opening

# One year: the API's (and the dashboard form's) upper limit on any delay. `delay_before` caps
# at it too, so a row stored before the limit existed cannot push a date past year 9999.
MAX_DELAY_MINUTES = 525_600
MAX_BACKOFF_MULTIPLIER = 100.0


@dataclass(frozen=True)
class Schedule:
    """The numbers of a retry policy, as frozen on an attempt when it opens."""

    max_retries: int
    initial_delay_minutes: int
    backoff_multiplier: float
    max_delay_minutes: int
    # When reminders may go out, in the customer's time; None sends whenever due.
    window: SendWindow | None = None


@dataclass(frozen=True)
class EffectivePolicy:
    """The policy an attempt opening now would get: the active one, or the default.

    `retry.policy.effective_policy` resolves it; the attempt copies its numbers and channels.
    """

    policy_id: int | None
    name: str
    schedule: Schedule
    enabled_channels: tuple[str, ...]

    @property
    def is_default(self) -> bool:
        return self.policy_id is None


def delay_before(step: int, schedule: Schedule) -> timedelta:
    """Delay before reminder `step` (0 for the first), capped at `max_delay_minutes`."""
    if step < 0:
        raise ValueError("step must be >= 0")
    # Compare in log space first so a large multiplier and step never overflow a float.
    minutes = float(min(schedule.max_delay_minutes, MAX_DELAY_MINUTES))
    if schedule.backoff_multiplier == 1 or step == 0:
        minutes = min(float(schedule.initial_delay_minutes), minutes)
    else:
        growth = schedule.backoff_multiplier
        value = float(schedule.initial_delay_minutes)
        for _ in range(step):
            value *= growth
            if value >= minutes:
                break
        minutes = min(value, minutes)
    return timedelta(minutes=minutes)


def calculate_next_retry(
    *, retry_count: int, schedule: Schedule, last_retry_at: datetime
) -> datetime | None:
    """When reminder number `retry_count` (0-based) is due, or None once retries are exhausted.

    The one computation of a reminder's time. The first reminder is due `initial_delay` after
    the attempt opened (pass `created_at` as `last_retry_at`); each next one `delay_before(k)`
    after the previous reminder.
    """
    if retry_count >= schedule.max_retries:
        return None
    return last_retry_at + delay_before(retry_count, schedule)


def next_due(
    schedule: Schedule, *, steps_done: int, last_at: datetime, place: Place = UTC_PLACE
) -> datetime:
    """When an attempt is next due once `steps_done` reminders went out, the last of them (or
    the opening, for none) at `last_at`: the next reminder while reminders remain, moved to
    the send window's next opening where the customer is (`place`) when due outside it.

    After the last one it is the end of a grace period of one more delay, when the queue
    cancels the attempt as exhausted: the link in the last reminder keeps working meanwhile.
    Opening an attempt, the engine's record of a step and the demo all ask this.
    """
    reminder = calculate_next_retry(
        retry_count=steps_done, schedule=schedule, last_retry_at=last_at
    )
    if reminder is None:
        return last_at + delay_before(steps_done, schedule)
    return in_window(reminder, schedule, place)


def in_window(due: datetime, schedule: Schedule, place: Place = UTC_PLACE) -> datetime:
    """`due`, or the send window's next opening after it where the customer is (UTC)."""
    if schedule.window is None:
        return due
    return next_opening(due, schedule.window, place)


def preview(schedule: Schedule, start: datetime, place: Place = UTC_PLACE) -> list[datetime]:
    """Every reminder time the schedule would produce if no step ran late (the policy
    preview), each in the send window where the customer is (`place`)."""
    return [send for _due, send in preview_steps(schedule, start, place)]


def preview_steps(
    schedule: Schedule, start: datetime, place: Place = UTC_PLACE
) -> list[tuple[datetime, datetime]]:
    """Each reminder's (due, send) times if no step ran late: when the backoff makes it due
    after the previous send (or `start`), and when it goes, the same or moved into the send
    window."""
    steps: list[tuple[datetime, datetime]] = []
    at = start
    for k in range(schedule.max_retries):
        due = at + delay_before(k, schedule)
        at = in_window(due, schedule, place)
        steps.append((due, at))
    return steps
