"""The one clock of the service: read time through `utc_now()` so tests can move it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def utc_now() -> datetime:
    return datetime.now(UTC) + _offset


@contextmanager
def shifted_clock(by: timedelta) -> Iterator[None]:
    """Move the service's clock forward for the duration of the block (tests, demo)."""
    global _offset
    previous = _offset
    _offset = previous + by
    try:
        yield
    finally:
        _offset = previous


def ensure_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: times must carry a timezone")
    return value.astimezone(UTC)
