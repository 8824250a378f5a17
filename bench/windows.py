"""Send windows: the CPU one delivery's record spends computing its next reminder, without a
window, with one the reminder falls inside, and with one that moves it.

    .venv/bin/python -m bench.windows

The record of a step (`retry.steps.record_steps`) computes each attempt's next reminder with
`recovery.schedule.next_due`; with a send window it also reads the customer's country (cached
per number) and finds the window's next opening. This times exactly those calls, in-process,
best of 5 runs; see bench/README.md, "Send windows". It asserts no timing.
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

import typer

from stealth_recovery.core.contacts import customer_country
from stealth_recovery.recovery.schedule import Schedule, next_due
from stealth_recovery.recovery.windows import WEEKDAYS, Place, SendWindow

app = typer.Typer(add_completion=False)

PLAIN = Schedule(5, 60, 2.0, 1440)
WINDOWED = Schedule(5, 60, 2.0, 1440, window=SendWindow(540, 1200, WEEKDAYS, skip_holidays=True))
BERLIN = Place("Europe/Berlin", "DE")
# The second reminder is due 2 h after the first: 12:00 Berlin (inside) or 21:00 (moved).
INSIDE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MOVED = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


def _micros(call: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


@app.command()
def main(number: int = typer.Option(20_000, help="calls per timing")) -> None:
    """Print µs per call of each case, with the machine's load average."""
    cases: dict[str, Callable[[], object]] = {
        "no window": lambda: next_due(PLAIN, steps_done=1, last_at=INSIDE),
        "window, due inside": lambda: (
            customer_country("+4915123456789", "de_DE"),
            next_due(WINDOWED, steps_done=1, last_at=INSIDE, place=BERLIN),
        ),
        "window, moved to the next opening": lambda: (
            customer_country("+4915123456789", "de_DE"),
            next_due(WINDOWED, steps_done=1, last_at=MOVED, place=BERLIN),
        ),
    }
    typer.echo(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, call in cases.items():
        typer.echo(f"{name}: {_micros(call, number):.1f} µs per delivery")


if __name__ == "__main__":
    app()
