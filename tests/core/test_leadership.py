"""One process of several runs the background loops: the holder of the advisory lock."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from stealth_recovery.core.leadership import Leadership, send_wake
from tests.support.processes import wait_until

KEY = 0x7E57  # a lock of this test's own, apart from any running app's


@pytest.fixture
def wakes() -> queue.Queue[str]:
    """What the leader was woken for."""
    return queue.Queue()


@pytest.fixture
def contenders(
    database_url: str, postgres_only: None, wakes: queue.Queue[str]
) -> Iterator[list[Leadership]]:
    """Two would-be leaders on the test database, as two processes of `serve --workers 2`."""
    made = [
        Leadership(database_url, lead=lambda: None, on_wake=wakes.put, retry_seconds=0.2, key=KEY)
        for _ in range(2)
    ]
    yield made
    for leadership in made:
        leadership.stop()


class TestLeadership:
    def test_exactly_one_leads_and_the_other_takes_over_when_it_ends(
        self, contenders: list[Leadership]
    ) -> None:
        # Given two processes starting their loops
        for leadership in contenders:
            leadership.start()
        # When one has the lock and the other found it taken
        wait_until(lambda: any(c.leading.is_set() for c in contenders), 15, "a leader")
        wait_until(lambda: any(c.standing_by.is_set() for c in contenders), 15, "a follower")
        # Then only one runs the loops
        leaders = [c for c in contenders if c.leading.is_set()]
        assert len(leaders) == 1
        (follower,) = [c for c in contenders if c is not leaders[0]]
        # And when it ends, the other takes over
        leaders[0].stop()
        wait_until(follower.leading.is_set, 15, "the other to take over")

    def test_a_wake_from_any_process_reaches_the_leader(
        self, contenders: list[Leadership], engine: Engine, wakes: queue.Queue[str]
    ) -> None:
        # Given a leader
        leader = contenders[0]
        leader.start()
        wait_until(leader.leading.is_set, 15, "the lock")
        # When another process wakes the delivery loop
        send_wake(engine, "deliveries")
        # Then the leader hears it
        assert wakes.get(timeout=10) == "deliveries"
