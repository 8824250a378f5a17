"""The per-provider circuit breaker, on a clock the test moves."""

from __future__ import annotations

from stealth_recovery.notifications.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failures=3, cooldown_seconds=30, clock=clock)


class TestCircuitBreaker:
    def test_opens_after_consecutive_failures_only(self) -> None:
        clock = Clock()
        breaker = _breaker(clock)
        # Given failures broken by a success, the breaker stays closed
        breaker.failure()
        breaker.failure()
        breaker.success()
        breaker.failure()
        breaker.failure()
        assert breaker.allow() and not breaker.is_open
        # When a third consecutive failure comes, calls stop
        breaker.failure()
        assert breaker.is_open and not breaker.allow()

    def test_one_probe_after_the_cooldown_and_its_success_closes(self) -> None:
        clock = Clock()
        breaker = _breaker(clock)
        for _ in range(3):
            breaker.failure()
        clock.now = 29.9
        assert not breaker.allow()
        # After the cooldown exactly one call goes through
        clock.now = 30.0
        assert breaker.allow()
        assert not breaker.allow()
        # And its success lets everything through again
        breaker.success()
        assert breaker.allow() and breaker.allow()

    def test_a_failed_probe_opens_it_for_another_cooldown(self) -> None:
        clock = Clock()
        breaker = _breaker(clock)
        for _ in range(3):
            breaker.failure()
        clock.now = 31.0
        assert breaker.allow()
        breaker.failure()
        clock.now = 60.0
        assert not breaker.allow()
        clock.now = 61.0
        assert breaker.allow()
