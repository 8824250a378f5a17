"""Time one queue claim (`repository.claim_due_steps`) on a filled table, rolled back each time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery import repository

LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    claimed: int  # rows each claim returned

    @classmethod
    def of(cls, seconds: list[float], claimed: int) -> Timing:
        ms = sorted(s * 1000 for s in seconds)
        p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
        return cls(
            median_ms=round(statistics.median(ms), 3),
            p90_ms=round(p90, 3),
            min_ms=round(ms[0], 3),
            max_ms=round(ms[-1], 3),
            claimed=claimed,
        )


def _claim_only(session: Session, limit: int) -> int:
    return len(repository.claim_due_steps(session, now=utc_now(), limit=limit, lease=LEASE))


def _expire_only(session: Session, limit: int) -> int:
    return len(repository.expire_due(session, now=utc_now(), limit=limit))


def _cancel_only(session: Session, limit: int) -> int:
    return len(repository.cancel_exhausted_due(session, now=utc_now(), limit=limit))


def _queue_pass(session: Session, limit: int) -> int:
    # What `queue.claim_batch` runs in one transaction on every queue pass.
    now = utc_now()
    repository.expire_due(session, now=now, limit=limit)
    repository.cancel_exhausted_due(session, now=now, limit=limit)
    return len(repository.claim_due_steps(session, now=now, limit=limit, lease=LEASE))


def _time(
    engine: Engine, work: Callable[[Session, int], int], *, limit: int, repeats: int, warmup: int
) -> Timing:
    seconds: list[float] = []
    claimed = 0
    for i in range(warmup + repeats):
        with Session(engine) as session:
            session.execute(text("SELECT 1"))  # the connection and BEGIN are not the claim
            started = time.perf_counter()
            claimed = work(session, limit)
            elapsed = time.perf_counter() - started
            session.rollback()  # the table is the same for the next round
        if i >= warmup:
            seconds.append(elapsed)
    return Timing.of(seconds, claimed)


@contextmanager
def _captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def explain_claim(engine: Engine, *, limit: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the exact statement `claim_due_steps` sends, rolled back."""
    with Session(engine) as session, _captured(engine) as statements:
        _claim_only(session, limit)
        session.rollback()
    statement, parameters = next(s for s in statements if "UPDATE recovery_attempts" in s[0])
    with Session(engine) as session:
        plan = session.connection().exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
        )
        lines = [str(row[0]) for row in plan]
        session.rollback()
    return "\n".join(lines)


def measure(engine: Engine, *, limit: int, repeats: int, warmup: int = 2) -> dict[str, Any]:
    """Median and spread of the claim, of the two statements a queue pass runs before it
    (`expire_due`, `cancel_exhausted_due`; `claimed` is then the rows they changed), and of the
    whole pass."""
    parts = {
        "claim_due_steps": _claim_only,
        "expire_due": _expire_only,
        "cancel_exhausted_due": _cancel_only,
        "queue_pass": _queue_pass,
    }
    result: dict[str, Any] = {
        name: vars(_time(engine, work, limit=limit, repeats=repeats, warmup=warmup))
        for name, work in parts.items()
    }
    result["plan"] = explain_claim(engine, limit=limit)
    return result
