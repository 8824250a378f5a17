"""`Slots`: at most `size` holders, waiters served in arrival order, cancellation safe."""

from __future__ import annotations

import asyncio

import pytest

from stealth_recovery.core.slots import Slots


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class TestSlots:
    async def test_never_more_holders_than_slots_and_waiters_served_in_order(self) -> None:
        # Given two slots and five tasks wanting one each
        slots = Slots(2)
        holding: list[int] = []
        most = 0
        served: list[int] = []
        release = asyncio.Event()

        async def work(n: int) -> None:
            nonlocal most
            async with slots:
                served.append(n)
                holding.append(n)
                most = max(most, len(holding))
                await release.wait()
                holding.remove(n)

        # When they all start and the holders then finish
        tasks = [asyncio.create_task(work(n)) for n in range(5)]
        await _settle()
        assert served == [0, 1]
        release.set()
        await asyncio.gather(*tasks)

        # Then two at most held a slot at once, in the order they asked, and all are free again
        assert most == 2
        assert served == [0, 1, 2, 3, 4]
        assert slots.free == 2

    async def test_a_cancelled_waiter_takes_no_slot(self) -> None:
        # Given one slot held and two waiters
        slots = Slots(1)
        await slots.acquire()
        first = asyncio.create_task(slots.acquire())
        second = asyncio.create_task(slots.acquire())
        await _settle()

        # When the first waiter is cancelled and the slot released
        first.cancel()
        await _settle()
        slots.release()
        await _settle()

        # Then the second waiter holds it
        assert first.cancelled()
        assert second.done() and not second.cancelled()
        assert slots.free == 0

    async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on(self) -> None:
        # Given one slot held and two waiters
        slots = Slots(1)
        await slots.acquire()
        first = asyncio.create_task(slots.acquire())
        second = asyncio.create_task(slots.acquire())
        await _settle()

        # When the slot is handed to the first, which is cancelled before it runs
        slots.release()
        first.cancel()
        await _settle()

        # Then the second gets the slot instead, and none is lost or doubled
        assert first.cancelled()
        assert second.done() and not second.cancelled()
        assert slots.free == 0
        slots.release()
        assert slots.free == 1

    def test_needs_a_slot(self) -> None:
        with pytest.raises(ValueError, match="at least one slot"):
            Slots(0)
