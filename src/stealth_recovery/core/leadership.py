"""One process of several runs the background loops: the one holding a PostgreSQL advisory lock.

`serve --workers N` starts N processes from one application; each would otherwise run the
embedded scheduler and the webhook delivery loop. Every process starts a `Leadership`: a thread
that tries `pg_try_advisory_lock` on a connection of its own every few seconds; the process that
gets it runs the loops (`lead`) and keeps the connection, and with it the lock, until it stops.
A process that ends (crash included) closes that connection, so the lock is free again and
another process (or the one the supervisor starts instead) takes it within `retry_seconds`.

The loops are woken across processes: `wake(kind)` sends `NOTIFY sr_wake, kind`; the leader
LISTENs on its lock connection and passes each payload to `on_wake`. A "Retry now" or a new
webhook event in any process reaches the loops at once, as in a single process.

If the leader's connection drops (the database restarted), its loops go on and it tries to take
the lock again; until it does, another process may take it and run loops too. Both are safe:
every claim of the queue and of deliveries holds across processes (`FOR UPDATE SKIP LOCKED`,
leases); the lock decides who does the work, never whether it is done once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import psycopg
import structlog
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

log = structlog.get_logger(__name__)

# The advisory lock's key ("SR loops"): one per database, whichever processes share it.
LOOPS_LOCK_KEY = 0x5352_4C4F_4F50
WAKE_CHANNEL = "sr_wake"


def libpq_url(sqlalchemy_url: str) -> str:
    """The connection string psycopg takes for an SQLAlchemy PostgreSQL URL."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


def send_wake(engine: Engine, kind: str) -> None:
    """Wake the leader's loop named `kind` (`NOTIFY`, delivered when this statement commits)."""
    with engine.connect() as connection:
        connection.execute(
            text("SELECT pg_notify(:channel, :kind)"), {"channel": WAKE_CHANNEL, "kind": kind}
        )
        connection.commit()


class Leadership:
    """Runs `lead` once, in whichever process holds the loops' advisory lock (see the module)."""

    def __init__(
        self,
        sqlalchemy_url: str,
        *,
        lead: Callable[[], None],
        on_wake: Callable[[str], None],
        retry_seconds: float = 5.0,
        key: int = LOOPS_LOCK_KEY,
    ) -> None:
        self._conninfo = libpq_url(sqlalchemy_url)
        self._lead = lead
        self._on_wake = on_wake
        self.retry_seconds = retry_seconds
        self._key = key
        self._stop = threading.Event()
        self.leading = threading.Event()  # set once this process runs the loops
        self.standing_by = threading.Event()  # set once it found the lock taken
        self._thread = threading.Thread(target=self._run, name="sr-leadership", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop trying; a leader closes its connection, which frees the lock for another."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                    if row is not None and row[0]:
                        self._hold(conn)
                        continue
            except psycopg.Error:
                log.warning("loops_lock_unavailable", exc_info=True)
            if not self.standing_by.is_set() and not self.leading.is_set():
                log.info("background_loops_in_another_process", pid=os.getpid())
                self.standing_by.set()
            self._stop.wait(self.retry_seconds)

    def _hold(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute(f"LISTEN {WAKE_CHANNEL}")
        if not self.leading.is_set():
            self.leading.set()
            log.info("background_loops_lead", pid=os.getpid())
            self._lead()
        while not self._stop.is_set():
            for note in conn.notifies(timeout=1.0):
                self._on_wake(note.payload)
