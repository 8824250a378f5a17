"""The reminder schedule: min(initial × multiplier^k, max_delay)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from stealth_recovery.recovery.schedule import Schedule, calculate_next_retry, delay_before, preview

T0 = datetime(2025, 10, 18, 10, 0, tzinfo=UTC)

schedules = st.builds(
    lambda retries, initial, multiplier, extra: Schedule(
        max_retries=retries,
        initial_delay_minutes=initial,
        backoff_multiplier=multiplier,
        max_delay_minutes=initial + extra,
    ),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=1, max_value=10_000),
    st.floats(min_value=1, max_value=100, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=100_000),
)


class TestSeedSchedule:
    def test_sixty_minutes_doubling_capped_at_a_day(self) -> None:
        # Given the seed's policy: 60 min, ×2, cap 1440, six reminders
        schedule = Schedule(
            max_retries=6, initial_delay_minutes=60, backoff_multiplier=2, max_delay_minutes=1440
        )
        # When the delays are computed
        delays = [delay_before(k, schedule) for k in range(6)]
        # Then they are 1, 2, 4, 8, 16 and 24 hours (capped)
        assert delays == [timedelta(hours=h) for h in (1, 2, 4, 8, 16, 24)]

    def test_first_reminder_an_initial_delay_after_the_failure(self) -> None:
        schedule = Schedule(3, 60, 2, 1440)
        assert calculate_next_retry(retry_count=0, schedule=schedule, last_retry_at=T0) == (
            T0 + timedelta(hours=1)
        )

    def test_each_next_one_after_the_previous_reminder(self) -> None:
        schedule = Schedule(3, 60, 2, 1440)
        assert calculate_next_retry(retry_count=2, schedule=schedule, last_retry_at=T0) == (
            T0 + timedelta(hours=4)
        )

    def test_preview_lists_every_reminder_time(self) -> None:
        schedule = Schedule(3, 30, 2, 720)
        assert preview(schedule, T0) == [
            T0 + timedelta(minutes=30),
            T0 + timedelta(minutes=90),
            T0 + timedelta(minutes=210),
        ]


class TestScheduleProperties:
    @given(schedules, st.integers(min_value=0, max_value=50))
    def test_never_beyond_the_cap(self, schedule: Schedule, step: int) -> None:
        assert delay_before(step, schedule) <= timedelta(minutes=schedule.max_delay_minutes)

    @given(schedules, st.integers(min_value=0, max_value=50))
    def test_never_decreasing(self, schedule: Schedule, step: int) -> None:
        assert delay_before(step + 1, schedule) >= delay_before(step, schedule)

    @given(schedules, st.integers(min_value=0, max_value=20))
    def test_none_after_max_retries(self, schedule: Schedule, extra: int) -> None:
        after = calculate_next_retry(
            retry_count=schedule.max_retries + extra, schedule=schedule, last_retry_at=T0
        )
        assert after is None

    @given(schedules)
    def test_every_reminder_before_max_retries_is_scheduled(self, schedule: Schedule) -> None:
        for k in range(schedule.max_retries):
            at = calculate_next_retry(retry_count=k, schedule=schedule, last_retry_at=T0)
            assert at is not None and at > T0
