"""One event loop per process, in a background thread, holding the provider clients.

Celery tasks and the embedded scheduler are synchronous; they hand steps to this loop, so the
SMTP and HTTP connection pools survive from one task to the next instead of being rebuilt.
`run_due_now` is the embedded scheduler's tick: the queue's batches run on this loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.sender import ProviderNotifier
from stealth_recovery.notifications.types import Notifier
from stealth_recovery.recovery.repository import ClaimedStep
from stealth_recovery.retry.queue import process_retry_queue
from stealth_recovery.retry.steps import StepReport, run_steps

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (CPython on Linux and macOS), else asyncio's.

    Every message costs the loop a few dozen callbacks (SMTP replies, timeouts, futures):
    uvloop runs them for a fraction of the CPU of asyncio's pure-Python loop.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, PyPy
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Runtime:
    def __init__(self) -> None:
        self._loop = new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sr-runtime", daemon=True
        )
        self._thread.start()
        self._notifier: Notifier | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _get_notifier(self) -> Notifier:
        if self._notifier is None:
            self._notifier = ProviderNotifier.from_settings(get_settings())
        return self._notifier

    def run_steps(self, steps: Sequence[ClaimedStep]) -> StepReport:
        return self.submit_steps(steps).result()

    def submit_steps(self, steps: Sequence[ClaimedStep]) -> Future[StepReport]:
        async def go() -> StepReport:
            return await run_steps(steps, notifier=await self._get_notifier())

        return self.submit(go())

    def close(self) -> None:
        async def shutdown() -> None:
            if self._notifier is not None:
                await self._notifier.aclose()
                self._notifier = None

        try:
            self.run(shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()


_runtime: Runtime | None = None
_runtime_pid: int | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process's runtime; a forked child (Celery prefork) builds its own."""
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime = Runtime()
            _runtime_pid = os.getpid()
        return _runtime


def reset_runtime() -> None:
    """Close the runtime (tests change provider settings between cases)."""
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is not None and _runtime_pid == os.getpid():
            _runtime.close()
        _runtime = None
        _runtime_pid = None


# Claimed batches the embedded path runs at once.
BATCHES_IN_FLIGHT = 2


def run_due_now(*, now: datetime | None = None) -> int:
    """Claim every due step and run it in this process (the embedded scheduler's tick).

    Two claimed batches are in flight at once, so the next claim and its sends overlap the
    recording of the previous batch instead of waiting for it.
    """
    runtime = get_runtime()
    report = StepReport()
    in_flight: deque[Future[StepReport]] = deque()

    def run_here(steps: list[ClaimedStep]) -> None:
        if len(in_flight) >= BATCHES_IN_FLIGHT:
            report.add(in_flight.popleft().result())
        in_flight.append(runtime.submit_steps(steps))

    try:
        process_retry_queue(dispatch=run_here, now=now)
    finally:
        while in_flight:
            report.add(in_flight.popleft().result())
    return report.advanced
