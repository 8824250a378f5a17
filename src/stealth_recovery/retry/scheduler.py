"""The embedded default: the same queue functions on a timer, in the API process, no broker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.retry import queue, runtime

log = structlog.get_logger(__name__)

_current: EmbeddedScheduler | None = None


class EmbeddedScheduler:
    def __init__(
        self, interval_seconds: float, extra_jobs: Sequence[Callable[[], object]] = ()
    ) -> None:
        self.interval_seconds = interval_seconds
        # Work of later layers run at each tick (e.g. expiring Stripe Checkouts of ended attempts).
        self._extra_jobs = tuple(extra_jobs)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sr-scheduler", daemon=True)
        self._last_cleanup_day: datetime | None = None

    @classmethod
    def from_settings(cls, extra_jobs: Sequence[Callable[[], object]] = ()) -> EmbeddedScheduler:
        return cls(get_settings().scheduler_interval_seconds, extra_jobs)

    def start(self) -> None:
        global _current
        _current = self
        self._thread.start()
        log.info("embedded_scheduler_started", interval_seconds=self.interval_seconds)

    def stop(self) -> None:
        global _current
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        if _current is self:
            _current = None
        from stealth_recovery.retry.runtime import reset_runtime

        reset_runtime()

    def wake(self) -> None:
        self._wake.set()

    def tick(self) -> None:
        """One pass: send every due step; at the first tick after 02:00 UTC, the cleanup."""
        now = utc_now()
        runtime.run_due_now(now=now)
        for job in self._extra_jobs:
            try:
                job()
            except Exception:
                log.exception("embedded_scheduler_job_failed", job=getattr(job, "__name__", "?"))
        cleanup_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if now.hour >= 2 and self._last_cleanup_day != cleanup_day:
            with session_scope() as session:
                queue.cleanup_expired_attempts(session, now=now)
            self._last_cleanup_day = cleanup_day

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                # One bad pass never stops the scheduler; the lease brings claimed steps back.
                log.exception("embedded_scheduler_tick_failed")
            self._wake.wait(self.interval_seconds)
            self._wake.clear()


# Set when the scheduler may run in another process (`serve --workers N`): how to wake it there.
_waker: Callable[[], None] | None = None


def wake_through(waker: Callable[[], None] | None) -> None:
    """Route `wake_embedded_scheduler` to `waker` (None: to this process's scheduler)."""
    global _waker
    _waker = waker


def wake_embedded_scheduler() -> None:
    """Run a pass now (retry-now): the scheduler of this process, or wherever it runs."""
    if _waker is not None:
        _waker()
    elif _current is not None:
        _current.wake()
