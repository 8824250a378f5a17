"""One embedded sending run in a process of its own, for `bench.sending`.

    python -m bench.sending_worker    # reads DATABASE_URL, SMTP_HOST, SMTP_PORT, ...

Imports the engine (from whichever checkout is first on PYTHONPATH), warms up the database
connection, then ticks `run_due_now()` until nothing is due and prints one JSON line: where the
engine was imported from, deliveries and the wall and CPU seconds of the ticks (this process,
every thread: the event loop, its thread pool, the claims).
"""

from __future__ import annotations

import json
import resource
import time


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    from sqlalchemy import text

    import stealth_recovery
    import stealth_recovery.all_models  # every table mapped, as in `serve`
    from stealth_recovery.core.database import session_scope
    from stealth_recovery.core.logging import configure_logging
    from stealth_recovery.retry.runtime import reset_runtime, run_due_now

    configure_logging("WARNING")
    with session_scope() as session:
        session.execute(text("SELECT 1"))
    cpu, started = _cpu_seconds(), time.perf_counter()
    advanced = 0
    # One call is one scheduler tick, which stops after its batches: tick until done.
    while done := run_due_now():
        advanced += done
    elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    reset_runtime()
    print(
        json.dumps(
            {
                "engine_from": stealth_recovery.__file__,
                "advanced": advanced,
                "elapsed_s": elapsed,
                "worker_cpu_s": cpu,
            }
        )
    )


if __name__ == "__main__":
    main()
