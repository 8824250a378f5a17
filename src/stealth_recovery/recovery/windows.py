"""Send windows: the hours and weekdays, in the customer's time zone, when reminders may go out.

A window is `[start, end)` in local wall-clock minutes on the days it names, optionally
skipping the public holidays of the customer's country (the `holidays` package, national
holidays only). A reminder due outside it moves to the window's next opening: the smallest
instant, not before the due time, whose local time is inside. Windows never cross midnight
(`start < end`): a window is the customer's day, and a day set then names the days it opens.

Daylight-saving changes are exact: an opening that falls in a skipped hour (02:30 on a night
the clocks jump from 02:00 to 03:00) is the instant the clocks jump (03:00); one that falls in
a repeated hour is its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

MINUTES_PER_DAY = 1440
ALL_DAYS = 0b1111111  # bit 0 is Monday … bit 6 Sunday (ISO weekday - 1)
WEEKDAYS = 0b0011111
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# How far ahead an opening is looked for. Only a day set whose every day is a holiday for
# this long could need more; the due time is kept then rather than never sending.
_SEARCH_DAYS = 400
# Offsets are sampled this far apart to find the clock changes inside a day (no zone changes
# its clocks twice within an hour).
_SCAN_STEP = timedelta(hours=1)
# Clock changes are looked for this far around a local date: a change may repeat or skip a
# stretch of the neighbouring date.
_MARGIN = timedelta(hours=3)


@dataclass(frozen=True)
class SendWindow:
    """When reminders may go out, in the customer's local time.

    `start_minute`/`end_minute`: minutes after local midnight, start inclusive (0–1439), end
    exclusive (1–1440, 1440 = midnight at the end of the day), start < end. `days`: a bit set
    of ISO weekdays (bit 0 Monday … bit 6 Sunday), never empty. `skip_holidays`: also closed on
    the public holidays of the customer's country, when it is known.
    """

    start_minute: int
    end_minute: int
    days: int = ALL_DAYS
    skip_holidays: bool = False

    def opens_on(self, day: date, country: str | None) -> bool:
        """Whether the window opens at all on this local date."""
        if not self.days >> (day.isoweekday() - 1) & 1:
            return False
        return not (self.skip_holidays and country and is_holiday(country, day))


@dataclass(frozen=True)
class Place:
    """Where the customer is, for their send window: an IANA zone and an ISO 3166 country."""

    zone: str = "UTC"
    country: str | None = None


UTC_PLACE = Place()


@lru_cache(maxsize=1024)
def zone_info(name: str) -> ZoneInfo:
    """The zone of that name; UTC for a name this system does not know (rows stored before
    zones were checked)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return ZoneInfo("UTC")


@lru_cache(maxsize=4096)
def _holidays_of(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:  # a country the package does not cover: no holidays known
        return frozenset()


def check_zone(name: str) -> str:
    """The IANA zone name, stripped; ValueError naming the rule when no such zone exists."""
    candidate = name.strip()
    try:
        ZoneInfo(candidate)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("must be an IANA time zone such as Europe/Berlin") from None
    return candidate


def is_holiday(country: str, day: date) -> bool:
    """Whether `day` is a national public holiday in `country` (ISO 3166 alpha-2)."""
    return day in _holidays_of(country.upper(), day.year)


def is_open(at: datetime, window: SendWindow, place: Place) -> bool:
    """Whether the aware instant `at` is inside the window where the customer is."""
    return _inside(at, window, zone_info(place.zone), place.country)


def _inside(at: datetime, window: SendWindow, zone: ZoneInfo, country: str | None) -> bool:
    local = at.astimezone(zone)
    minute = local.hour * 60 + local.minute
    if not window.start_minute <= minute < window.end_minute:
        return False
    return window.opens_on(local.date(), country)


def next_opening(due: datetime, window: SendWindow, place: Place) -> datetime:
    """The smallest instant not before `due` (aware) inside the window, in UTC.

    `due` itself when it is inside. Otherwise the window's next opening: its start on the next
    day it opens, or the moment a clock change brings the local time into it.
    """
    zone = zone_info(place.zone)
    due = due.astimezone(UTC)
    if _inside(due, window, zone, place.country):
        return due
    best: datetime | None = None
    # The day before too: a clock set back over midnight repeats part of the previous date.
    day = due.astimezone(zone).date() - timedelta(days=1)
    for _ in range(_SEARCH_DAYS):
        if best is not None and _day_start(day, zone) - _MARGIN > best:
            return best  # every later candidate comes after the one found
        if window.opens_on(day, place.country):
            for candidate in _candidates(day, window, zone):
                if (
                    candidate > due
                    and (best is None or candidate < best)
                    and _inside(candidate, window, zone, place.country)
                ):
                    best = candidate
        day += timedelta(days=1)
    return best or due


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _candidates(day: date, window: SendWindow, zone: ZoneInfo) -> list[datetime]:
    """Where the window may open on local date `day`: the start time (both readings when the
    clocks repeat it) and every clock change of that day."""
    start = time(window.start_minute // 60, window.start_minute % 60)
    found = [
        datetime.combine(day, start, tzinfo=zone).astimezone(UTC),
        datetime.combine(day, start, tzinfo=zone).replace(fold=1).astimezone(UTC),
    ]
    low = _day_start(day, zone) - _MARGIN
    high = _day_start(day + timedelta(days=1), zone) + _MARGIN
    if _offset(zone, low) != _offset(zone, high):
        found.extend(_clock_changes(zone, low, high))
    return found


def _clock_changes(zone: ZoneInfo, low: datetime, high: datetime) -> list[datetime]:
    """The instants (to the second) in `(low, high]` at which the zone's offset changes."""
    changes: list[datetime] = []
    at = low
    while at < high:
        nxt = min(at + _SCAN_STEP, high)
        if _offset(zone, at) != _offset(zone, nxt):
            before, after = at, nxt
            while after - before > timedelta(seconds=1):
                middle = before + (after - before) / 2
                middle = middle.replace(microsecond=0)
                if middle <= before:
                    break
                if _offset(zone, middle) == _offset(zone, before):
                    before = middle
                else:
                    after = middle
            changes.append(after)
        at = nxt
    return changes


def _offset(zone: ZoneInfo, at: datetime) -> timedelta | None:
    return at.astimezone(zone).utcoffset()


def parse_clock(value: str) -> int:
    """Minutes after midnight of "HH:MM" (00:00–24:00); ValueError naming the rule."""
    hours, sep, minutes = value.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError("must be a time of day as HH:MM, such as 09:00")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or total > MINUTES_PER_DAY:
        raise ValueError("must be a time of day between 00:00 and 24:00")
    return total


def format_clock(minute: int) -> str:
    """ "HH:MM" of minutes after midnight (1440 is "24:00")."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def day_set(names: list[str] | tuple[str, ...]) -> int:
    """The bit set of day names ("mon" … "sun"); ValueError naming the rule."""
    bits = 0
    for name in names:
        key = name.strip().lower()[:3]
        if key not in DAY_NAMES:
            raise ValueError(f"unknown day {name!r}; use mon, tue, wed, thu, fri, sat, sun")
        bits |= 1 << DAY_NAMES.index(key)
    if not bits:
        raise ValueError("must name at least one day")
    return bits


def day_names(days: int) -> list[str]:
    """The day names of a bit set, Monday first."""
    return [name for i, name in enumerate(DAY_NAMES) if days >> i & 1]
