"""End-to-end deliveries per second: claimed → sent → logged → rescheduled.

Two ways to run the same engine: embedded (`run_due_now()` in this process, what
`serve` does without Redis) and Celery (`stealth-recovery worker` processes fed by
`process_retry_queue` dispatching `send_recovery_batch` tasks over Redis).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.machine import CpuMeter
from bench.smtp_process import SinkProcess

# The Celery run is given up (and reported incomplete) after this long without progress.
STALL_SECONDS = 60.0


def point_settings_at(env: dict[str, str]) -> None:
    """Set the environment this process reads its settings from, and drop what it cached."""
    from stealth_recovery.core import database
    from stealth_recovery.core.settings import get_settings
    from stealth_recovery.retry.runtime import reset_runtime

    for name in ("SMTP_USER", "SMTP_PASSWORD", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.update(env)
    reset_runtime()
    get_settings.cache_clear()
    database.reset_engine()


def engine_settings() -> dict[str, Any]:
    """The settings that bound how much is in flight, as this process reads them."""
    from stealth_recovery.core.settings import get_settings

    settings = get_settings()
    names = (
        "smtp_pool_size",
        "send_concurrency",
        "queue_batch_size",
        "dispatch_chunk_size",
        "queue_lease_seconds",
    )
    return {name: getattr(settings, name) for name in names}


def outcome(engine: Engine) -> dict[str, int]:
    """What the database says was done: advanced, rescheduled as the policy says, logged."""
    with engine.connect() as connection:
        attempts = connection.execute(
            text(
                """
                SELECT count(*) FILTER (WHERE retry_count = 1),
                       count(*) FILTER (WHERE status = 'sent'),
                       count(*) FILTER (WHERE retry_count = 1
                                        AND next_retry_at = last_retry_at + interval '120 minutes')
                FROM recovery_attempts
                """
            )
        ).one()
        logs: dict[str, int] = {
            str(status): int(count)
            for status, count in connection.execute(
                text("SELECT status, count(*) FROM notification_logs GROUP BY status")
            )
        }
    return {
        "advanced": int(attempts[0]),
        "status_sent": int(attempts[1]),
        "rescheduled_per_policy": int(attempts[2]),
        "logs_sent": logs.get("sent", 0),
        "logs_pending": logs.get("pending", 0),
        "logs_failed": logs.get("failed", 0) + logs.get("bounced", 0),
    }


def _advanced(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM recovery_attempts WHERE retry_count = 1")
            ).scalar_one()
        )


def _result(
    *,
    attempts: int,
    elapsed: float,
    engine: Engine,
    sink: SinkProcess,
    sink_before: int,
    cpu: dict[str, float],
    extra: dict[str, Any],
) -> dict[str, Any]:
    stats = sink.stats(since=sink_before)
    done = outcome(engine)
    return {
        "attempts": attempts,
        "elapsed_s": round(elapsed, 3),
        "deliveries_per_s": round(done["advanced"] / elapsed, 1) if elapsed else 0.0,
        "complete": done["advanced"] == attempts,
        **done,
        "messages_received": stats.messages - sink_before,
        "distinct_recipients": stats.recipients,
        "smtp_connections_total": stats.connections,
        "cpu": cpu,
        **extra,
    }


def run_embedded(
    *, url: str, engine: Engine, sink: SinkProcess, attempts: int, overrides: dict[str, str]
) -> dict[str, Any]:
    """`run_due_now()` in this process until every due step is done."""
    point_settings_at(
        {
            "DATABASE_URL": url,
            "SMTP_HOST": sink.host,
            "SMTP_PORT": str(sink.port),
            "SMTP_SECURITY": "none",
            **overrides,
        }
    )
    from stealth_recovery.retry.runtime import reset_runtime, run_due_now

    sink_before = sink.stats().messages
    meter = CpuMeter({"bench_worker": os.getpid(), "smtp_sink": sink.pid}).start()
    started = time.perf_counter()
    # One call is one scheduler tick, which stops after `max_batches` claims: tick until done.
    while run_due_now():
        pass
    elapsed = time.perf_counter() - started
    cpu = meter.stop()
    reset_runtime()
    return _result(
        attempts=attempts,
        elapsed=elapsed,
        engine=engine,
        sink=sink,
        sink_before=sink_before,
        cpu=cpu,
        extra={"settings": engine_settings()},
    )


class Worker:
    """One `stealth-recovery worker` command in its own process group (stopped by its id)."""

    def __init__(self, env: dict[str, str], log_path: Path, *, concurrency: int) -> None:
        self.log_path = log_path
        argv = [sys.executable, "-m", "stealth_recovery.cli", "worker", "--loglevel=warning"]
        if concurrency:
            argv.append(f"--concurrency={concurrency}")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, ping: Callable[[], int], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{self.log_tail()}")
            if ping():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the worker was not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


@contextmanager
def celery_worker(
    env: dict[str, str], *, concurrency: int, ping: Callable[[], int]
) -> Iterator[Worker]:
    with tempfile.TemporaryDirectory(prefix="sr-bench-") as folder:
        worker = Worker(env, Path(folder) / "worker.log", concurrency=concurrency)
        try:
            worker.wait_ready(ping)
            yield worker
        finally:
            worker.stop()


def run_celery(
    *,
    url: str,
    engine: Engine,
    sink: SinkProcess,
    attempts: int,
    redis_url: str,
    concurrency: int,
    overrides: dict[str, str],
    timeout: float,
    worker_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A worker command over Redis; this process claims and dispatches, then polls the table.

    `worker_env` is added to the worker command's environment only (e.g. a PYTHONPATH that
    runs another checkout's engine)."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "SMTP_HOST": sink.host,
        "SMTP_PORT": str(sink.port),
        "SMTP_SECURITY": "none",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }
    point_settings_at(env)
    from stealth_recovery.core.settings import get_settings
    from stealth_recovery.recovery.repository import ClaimedStep
    from stealth_recovery.retry.queue import process_retry_queue
    from stealth_recovery.retry.tasks import send_recovery_batch
    from stealth_recovery.worker import celery_app

    settings = get_settings()
    # The app reads its broker at import; an earlier import in this process saw no REDIS_URL.
    celery_app.conf.update(broker_url=redis_url, result_backend=redis_url)
    chunk = settings.dispatch_chunk_size
    tasks = 0

    def dispatch(steps: list[ClaimedStep]) -> None:
        nonlocal tasks
        for i in range(0, len(steps), chunk):
            send_recovery_batch.delay(
                [[s.attempt_id, s.retry_number, s.claim] for s in steps[i : i + chunk]]
            )
            tasks += 1

    def ping() -> int:
        return len(celery_app.control.ping(timeout=0.5) or [])

    if ping():
        # A worker of another run on this Redis database would take our tasks and look their
        # attempt ids up in its own database.
        raise RuntimeError(f"another Celery worker consumes {redis_url}; pick another --redis-url")
    with celery_worker(
        {**os.environ, **env, **(worker_env or {})}, concurrency=concurrency, ping=ping
    ) as running:
        sink_before = sink.stats().messages
        trees = {
            "celery_worker": running.process.pid,
            "bench_dispatcher": os.getpid(),
            "smtp_sink": sink.pid,
        }
        meter = CpuMeter(trees).start()
        started = time.perf_counter()
        process_retry_queue(dispatch=dispatch)
        dispatched = time.perf_counter() - started
        deadline = started + timeout
        last, last_change = -1, time.perf_counter()
        while time.perf_counter() < deadline:
            done = _advanced(engine)
            if done >= attempts:
                break
            if done != last:
                last, last_change = done, time.perf_counter()
            elif time.perf_counter() - last_change > STALL_SECONDS:
                break  # reported as incomplete, with the workers' log
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        # Let the last records land before counting them (the poll saw retry_count only).
        time.sleep(0.5)
        result = _result(
            attempts=attempts,
            elapsed=elapsed,
            engine=engine,
            sink=sink,
            sink_before=sink_before,
            cpu=cpu,
            extra={
                "dispatch_s": round(dispatched, 3),
                "tasks": tasks,
                "steps_per_task": chunk,
                "concurrency": concurrency or os.cpu_count(),
                "settings": engine_settings(),
            },
        )
        if not result["complete"]:
            result["worker_log_tail"] = running.log_tail()
    redis.Redis.from_url(redis_url).flushdb()
    return result
