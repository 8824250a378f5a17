"""`Slots`: a counting semaphore for one event loop, O(1) however many tasks wait on it.

The engine keeps thousands of sends waiting for a slot (messages in flight, unrecorded steps,
SMTP sessions). `asyncio.Semaphore` (Python 3.11) scans its waiters on acquire and on every
wake-up, so each step cost time in proportion to the queue: with a thousand waiting, a few
per cent of the worker's CPU went to that scan alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Slots:
    """Up to `size` holders at once; the others wait in arrival order (FIFO).

    A release hands its slot straight to the longest waiter still waiting. A waiter cancelled
    before it got a slot takes none; one cancelled just after it was handed one passes it on.
    Use on one event loop only (not thread-safe, like asyncio's own primitives).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a Slots needs at least one slot")
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """Slots nobody holds or has been handed."""
        return self._free

    async def acquire(self) -> None:
        if self._free > 0:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot it will not use: the next waiter gets it
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is skipped
                waiter.set_result(None)
                return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
