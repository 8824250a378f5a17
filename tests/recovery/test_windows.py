"""Send windows: a reminder due outside the window goes at its next opening, in local time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stealth_recovery.recovery.schedule import Schedule, next_due, preview_steps
from stealth_recovery.recovery.windows import (
    ALL_DAYS,
    WEEKDAYS,
    Place,
    SendWindow,
    day_names,
    day_set,
    is_holiday,
    is_open,
    next_opening,
    parse_clock,
)

# From UTC−12 to UTC+14, with the zones whose clocks change in every way: by an hour north
# and south of the equator, by half an hour (Lord Howe), at midnight (Santiago, Havana),
# with quarter-hour offsets (Kathmandu, Chatham) and half-hour ones (St John's, Adelaide).
ZONES = [
    "Etc/GMT+12",
    "Pacific/Pago_Pago",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Havana",
    "America/Santiago",
    "America/St_Johns",
    "America/Sao_Paulo",
    "Atlantic/Azores",
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Africa/Cairo",
    "Asia/Tehran",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Tongatapu",
    "Pacific/Kiritimati",
]
COUNTRIES = [None, "DE", "US", "AU", "BR", "NZ", "GB", "CL", "IN"]


def _clock_changes(zone: str, year: int) -> list[datetime]:
    """Every instant of `year` at which the zone's offset changes (to the hour: the search
    starts a few hours before)."""
    tz = ZoneInfo(zone)
    at = datetime(year, 1, 1, tzinfo=UTC)
    changes = []
    previous = at.astimezone(tz).utcoffset()
    while at.year == year:
        at += timedelta(hours=1)
        offset = at.astimezone(tz).utcoffset()
        if offset != previous:
            changes.append(at)
            previous = offset
    return changes


_CHANGES = {zone: _clock_changes(zone, 2026) for zone in ZONES}


@st.composite
def due_times(draw: st.DrawFn, zone: str) -> datetime:
    """Any moment of 2025–2027, or one within a day of one of the zone's clock changes."""
    changes = _CHANGES[zone]
    if changes and draw(st.booleans()):
        around = draw(st.sampled_from(changes))
        return around + timedelta(seconds=draw(st.integers(-86_400, 86_400)))
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return start + timedelta(seconds=draw(st.integers(0, 3 * 365 * 86_400)))


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(start + 1, 1440))
    days = draw(st.integers(1, ALL_DAYS))
    return SendWindow(start, end, days, skip_holidays=draw(st.booleans()))


@st.composite
def cases(draw: st.DrawFn) -> tuple[datetime, SendWindow, Place]:
    zone = draw(st.sampled_from(ZONES))
    place = Place(zone, draw(st.sampled_from(COUNTRIES)))
    return draw(due_times(zone)), draw(windows()), place


class TestNextOpening:
    @settings(max_examples=300, deadline=None)
    @given(cases())
    @example(
        # 02:30 on the night New York's clocks jump from 02:00 to 03:00: no such local time.
        (
            datetime(2026, 3, 8, 6, 0, tzinfo=UTC),
            SendWindow(150, 1200),
            Place("America/New_York", "US"),
        )
    )
    @example(
        # Santiago's clocks go from 24:00 back to 23:00: part of the evening comes twice.
        (
            datetime(2026, 4, 5, 2, 30, tzinfo=UTC),
            SendWindow(1380, 1440),
            Place("America/Santiago", "CL"),
        )
    )
    def test_the_time_found_is_the_first_inside_the_window_not_before_the_due_time(
        self, case: tuple[datetime, SendWindow, Place]
    ) -> None:
        # Given a reminder due at some moment, a window and where the customer is
        due, window, place = case
        # When its send time is found
        found = next_opening(due, window, place)
        # Then it is inside the window, never earlier than due
        assert found >= due
        assert is_open(found, window, place)
        # And it is the smallest such time: every whole minute before it is outside (windows
        # open at whole local minutes, and every offset of these zones is whole minutes)
        if found > due:
            assert (
                not is_open(found - timedelta(seconds=1), window, place)
                or found - timedelta(seconds=1) < due
            )
            minute = due.replace(second=0, microsecond=0) + timedelta(minutes=1)
            while minute < found and minute - due < timedelta(days=9):
                assert not is_open(minute, window, place), minute
                minute += timedelta(minutes=1)

    def test_a_reminder_due_at_two_in_the_night_goes_at_nine(self) -> None:
        # Given a window from 09:00 to 20:00 in Berlin and a reminder due at 02:00 local
        window = SendWindow(parse_clock("09:00"), parse_clock("20:00"))
        due = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 02:00 CET
        # Then it goes at 09:00 the same morning
        found = next_opening(due, window, Place("Europe/Berlin", "DE"))
        assert found == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

    def test_due_inside_the_window_is_kept_to_the_microsecond(self) -> None:
        window = SendWindow(540, 1200)
        due = datetime(2026, 12, 1, 12, 34, 56, 789, tzinfo=UTC)
        assert next_opening(due, window, Place("Europe/Berlin")) == due

    def test_the_closing_minute_is_outside(self) -> None:
        # Given a window closing at 20:00 in Berlin
        window = SendWindow(540, 1200)
        place = Place("Europe/Berlin")
        # Then 19:59:59 is inside and 20:00 goes the next morning
        assert is_open(datetime(2026, 12, 1, 18, 59, 59, tzinfo=UTC), window, place)
        assert next_opening(datetime(2026, 12, 1, 19, 0, tzinfo=UTC), window, place) == (
            datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
        )

    def test_weekends_and_public_holidays_are_skipped(self) -> None:
        # Given weekdays 09:00–20:00 skipping German holidays, due Christmas Eve after hours
        window = SendWindow(540, 1200, WEEKDAYS, skip_holidays=True)
        due = datetime(2026, 12, 24, 19, 30, tzinfo=UTC)
        # Then Christmas (Fri 25), Boxing Day (Sat 26) and Sunday pass: Monday 09:00
        found = next_opening(due, window, Place("Europe/Berlin", "DE"))
        assert found == datetime(2026, 12, 28, 8, 0, tzinfo=UTC)
        # And without a known country, only the weekday rule applies: Friday 25th at 09:00
        found = next_opening(due, window, Place("Europe/Berlin", None))
        assert found == datetime(2026, 12, 25, 8, 0, tzinfo=UTC)

    def test_an_opening_in_the_skipped_hour_is_the_moment_the_clocks_jump(self) -> None:
        # Given a window opening at 02:30 on the night New York's clocks jump 02:00 → 03:00
        window = SendWindow(150, 1200)
        due = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST
        # Then it opens at 03:00 EDT, the first local time after 02:30
        assert next_opening(due, window, Place("America/New_York")) == datetime(
            2026, 3, 8, 7, 0, tzinfo=UTC
        )

    def test_an_opening_in_the_repeated_hour_is_its_first_occurrence(self) -> None:
        # Given a window opening at 01:30 on the night New York's clocks go back 02:00 → 01:00
        window = SendWindow(90, 1200)
        due = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
        # Then it opens at the first 01:30 (EDT)
        assert next_opening(due, window, Place("America/New_York")) == datetime(
            2026, 11, 1, 5, 30, tzinfo=UTC
        )

    @pytest.mark.parametrize(
        ("zone", "expected"),
        [
            ("Etc/GMT+12", datetime(2026, 6, 1, 21, 0, tzinfo=UTC)),  # UTC−12
            ("Pacific/Kiritimati", datetime(2026, 6, 1, 19, 0, tzinfo=UTC)),  # UTC+14
        ],
    )
    def test_the_extreme_zones(self, zone: str, expected: datetime) -> None:
        # Given 09:00–20:00 and a reminder due 1 June 2026 at 12:00 UTC
        window = SendWindow(540, 1200)
        due = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
        # Then it goes at the next 09:00 local: due at 00:00 on 1 June at UTC−12, it goes that
        # day; due at 02:00 on 2 June at UTC+14, it goes that day, still 1 June in UTC
        assert next_opening(due, window, Place(zone)) == expected


class TestScheduleWithAWindow:
    def test_the_backoff_stays_exact_inside_the_window(self) -> None:
        # Given 60 min ×2 with a 09:00–20:00 window in UTC, the attempt opening at 09:00
        schedule = Schedule(3, 60, 2.0, 1440, window=SendWindow(540, 1200))
        start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        # Then the reminders go 1 h, 2 h and 4 h apart, as without a window
        steps = preview_steps(schedule, start)
        assert [send for _due, send in steps] == [
            start + timedelta(hours=1),
            start + timedelta(hours=3),
            start + timedelta(hours=7),
        ]
        assert all(due == send for due, send in steps)

    def test_a_moved_reminder_starts_the_next_delay_from_when_it_went(self) -> None:
        # Given 10 h ×1 with 09:00–20:00 in UTC, the attempt opening at 18:00
        schedule = Schedule(2, 600, 1.0, 600, window=SendWindow(540, 1200))
        start = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
        # Then the first (due 04:00) goes at 09:00, and the second is due 10 h later: 19:00
        (first_due, first), (second_due, second) = preview_steps(schedule, start)
        assert (first_due, first) == (
            datetime(2026, 12, 2, 4, 0, tzinfo=UTC),
            datetime(2026, 12, 2, 9, 0, tzinfo=UTC),
        )
        assert second_due == second == datetime(2026, 12, 2, 19, 0, tzinfo=UTC)

    def test_the_grace_after_the_last_reminder_is_not_moved(self) -> None:
        # Given a spent schedule: the end of the grace period is no message, so no window
        schedule = Schedule(1, 60, 1.0, 60, window=SendWindow(540, 600))
        last = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
        assert next_due(schedule, steps_done=1, last_at=last) == last + timedelta(hours=1)


class TestDaysAndHolidays:
    def test_day_names_round_trip(self) -> None:
        assert day_set(["mon", "wed", "sun"]) == 0b1000101
        assert day_names(0b1000101) == ["mon", "wed", "sun"]
        assert day_set(["Mon", "Tuesday"]) == 0b11

    @pytest.mark.parametrize("names", [[], ["funday"]])
    def test_bad_day_sets_are_refused(self, names: list[str]) -> None:
        with pytest.raises(ValueError):
            day_set(names)

    def test_holidays_of_the_customers_country(self) -> None:
        assert is_holiday("DE", date(2026, 10, 3))  # German Unity Day
        assert not is_holiday("US", date(2026, 10, 3))
        assert is_holiday("us", date(2026, 7, 4))
        # A code the holidays package does not know: no holiday is assumed
        assert not is_holiday("ZZ", date(2026, 1, 1))

    @pytest.mark.parametrize(
        ("text", "minutes"), [("09:00", 540), ("00:00", 0), ("24:00", 1440), ("9:05", 545)]
    )
    def test_clock_times(self, text: str, minutes: int) -> None:
        assert parse_clock(text) == minutes

    @pytest.mark.parametrize("text", ["25:00", "24:01", "09:60", "9", "nine", "09:0", ""])
    def test_bad_clock_times_are_refused(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_clock(text)
