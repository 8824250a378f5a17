"""Jinja filters: money in minor units, UTC times, short durations."""

from __future__ import annotations

from datetime import datetime, timedelta

from babel import Locale

from stealth_recovery.core.money import format_minor
from stealth_recovery.core.time import utc_now

# Operators read every amount the same way, whatever each customer's locale.
_OPERATOR_LOCALE = Locale.parse("en_US")


def money(amount_minor: int | None, currency: str) -> str:
    """12345, "EUR" → "€123.45" (JPY has no minor unit: 1200 → "¥1,200")."""
    if amount_minor is None:
        return "—"
    return format_minor(amount_minor, currency, _OPERATOR_LOCALE)


def when(value: datetime | None) -> str:
    """A timestamp the way an operator reads it: 28 Nov 2026, 16:55 UTC."""
    if value is None:
        return "—"
    return value.strftime("%-d %b %Y, %H:%M UTC")


def duration(delta: timedelta) -> str:
    """A short human duration: 45 min, 3 h, 1 d 4 h."""
    minutes = round(delta.total_seconds() / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def relative(value: datetime | None) -> str:
    """ "in 2 h" / "3 d ago", from the service's clock."""
    if value is None:
        return "—"
    delta = value - utc_now()
    if abs(delta) < timedelta(minutes=1):
        return "now"
    return f"in {duration(delta)}" if delta > timedelta(0) else f"{duration(-delta)} ago"


def percent(part: int, whole: int) -> str:
    if whole <= 0:
        return "—"
    return f"{part * 100 / whole:.1f}%"
