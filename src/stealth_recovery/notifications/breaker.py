"""A circuit breaker per provider: a provider that keeps failing is left alone for a while.

Written here rather than taken from a library: the well-known ones (pybreaker, aiobreaker)
wrap a call and raise their own error, where the notifier needs a yes/no before the call and a
verdict after it that depends on our error triage (a refused recipient is the provider working).
The whole rule is a counter and a clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Closed → open after `failures` consecutive transient failures → one probe after
    `cooldown_seconds` (half-open) → closed on its success, open again on its failure.

    Per process and per provider: each worker process learns of an outage by itself, after at
    most `failures` calls. Times are `clock()` seconds (monotonic).
    """

    def __init__(
        self,
        *,
        failures: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    @property
    def probing(self) -> bool:
        """A probe call is out: its verdict decides for the calls waiting behind it."""
        return self._probing

    def allow(self) -> bool:
        """May a call go to the provider now? While open, only one probe after the cooldown."""
        if self._opened_at is None:
            return True
        if self._probing or self._clock() - self._opened_at < self.cooldown_seconds:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        """The provider answered (accepted or refused the message on its merits)."""
        self._consecutive = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        """A transient failure: no connection, timeout, throttling, 5xx, SMTP 4xx."""
        self._consecutive += 1
        if self._probing or self._consecutive >= self.failures:
            self._opened_at = self._clock()
        self._probing = False
