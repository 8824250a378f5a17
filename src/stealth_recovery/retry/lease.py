"""Who holds a step, and the last check before a message is handed to its provider.

A queue pass claims due steps under a fresh claim token (`new_claim_token`); the worker that
prepares them takes the lease over in its own name (`process_owner`), renews it while it works
(`Heartbeat`), and hands each message over only through `HandOverGate`, which marks the row
`handing_over` in the database after checking the attempt is open and still leased by us.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications import repository as logs_repository
from stealth_recovery.notifications.errors import HandOverRefused
from stealth_recovery.notifications.types import HandOver
from stealth_recovery.recovery import repository as attempts_repository

log = structlog.get_logger(__name__)

# Rows marked per statement: one round trip for everything that reached the hand-over at once.
GATE_BATCH = 500

_owner: tuple[int, str] | None = None


def process_owner() -> str:
    """This process's lease owner name: host, pid and a random part (pids are reused)."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:
        _owner = (pid, f"w:{socket.gethostname()[:30]}:{pid}:{uuid.uuid4().hex[:8]}")
    return _owner[1]


def new_claim_token() -> str:
    """The lease owner a queue pass writes on the steps it claims."""
    return f"q:{uuid.uuid4().hex}"


def mark_handing_over(
    session: Session, *, log_ids: list[int], owner: str, now: datetime
) -> set[int]:
    """The hand-over mark for `owner`: the rows whose attempt is open and leased by `owner`
    become `handing_over`; returns their ids (`notifications.repository.mark_handing_over`)."""
    return logs_repository.mark_handing_over(
        session,
        log_ids=log_ids,
        now=now,
        owner=owner,
        step_held=attempts_repository.STEP_HELD,
    )


def settle_unsettled_logs(
    session: Session, *, now: datetime, attempt_ids: list[int] | None = None
) -> int:
    """Settle the log rows of ended attempts and of steps already past (`pending` becomes
    `cancelled`, `handing_over` becomes `unconfirmed`); returns how many."""
    return logs_repository.settle_unsettled_logs(
        session, now=now, step_ended=attempts_repository.step_ended(), attempt_ids=attempt_ids
    )


class HandOverGate:
    """Marks messages as being handed over, in batches, immediately before each provider call.

    Every message that reaches its hand-over while a batch is being written waits for the next
    one, so under load one statement serves hundreds of messages and costs each about one round
    trip to the database. A message is let through only once its mark is committed.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    def for_message(self, log_id: int) -> HandOver:
        async def handover() -> None:
            await self.mark(log_id)

        return handover

    async def mark(self, log_id: int) -> None:
        """Return once `log_id` is marked `handing_over`; `HandOverRefused` when withheld."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((log_id, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await future

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:GATE_BATCH], self._waiting[GATE_BATCH:]
            ids = [log_id for log_id, _ in batch]
            try:
                allowed = await asyncio.to_thread(self._mark, ids)
            except Exception as exc:
                log.warning("hand_over_mark_failed", messages=len(ids), error=str(exc))
                refusal = HandOverRefused(
                    f"not sent: the hand-over could not be recorded ({type(exc).__name__})",
                    transient=True,
                )
                for _, future in batch:
                    if not future.done():
                        future.set_exception(refusal)
                continue
            for log_id, future in batch:
                if future.done():
                    continue
                if log_id in allowed:
                    future.set_result(None)
                else:
                    future.set_exception(
                        HandOverRefused(
                            "not sent: the attempt ended or its step passed to another worker"
                        )
                    )

    def _mark(self, ids: list[int]) -> set[int]:
        with session_scope() as session:
            return mark_handing_over(session, log_ids=ids, owner=self.owner, now=utc_now())


class Heartbeat:
    """Renews the lease of the steps a run holds, every third of the lease, while it runs.

    It runs on the worker's event loop: a loop that stalls (an owner alive but not working)
    stops renewing, its steps come due, and the next owner fences it off.
    """

    def __init__(self, *, owners: Iterable[str], lease: timedelta) -> None:
        self.owners = list(owners)
        self.lease = lease
        self.held: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            if not self.held:
                continue
            try:
                await asyncio.to_thread(self._renew, sorted(self.held))
            except Exception as exc:
                # The lease may run out meanwhile; fencing keeps that safe.
                log.warning("lease_renewal_failed", steps=len(self.held), error=str(exc))

    def _renew(self, attempt_ids: list[int]) -> None:
        with session_scope() as session:
            attempts_repository.renew_leases(
                session,
                attempt_ids=attempt_ids,
                owners=self.owners,
                until=utc_now() + self.lease,
            )
