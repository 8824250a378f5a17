"""Fault benchmark: the promises of the retry engine under crashes, restarts and outages.

Each scenario runs real `stealth-recovery worker` and `beat` processes (defaults, except a short
lease so a run takes seconds, not minutes) against a fresh PostgreSQL database filled with due
attempts, an SMTP server on loopback that records every message (`tests.support.smtp.SmtpSink`),
and TCP proxies in front of PostgreSQL and Redis that can play a restart of either. It counts
messages per customer at the SMTP server and the log rows' statuses, and prints the issue's
table. It is not a test and asserts nothing; it exits non-zero only if a scenario cannot run.

    .venv/bin/python -m bench.faults                 # every scenario, 2,000 attempts each
    .venv/bin/python -m bench.faults --only kill     # one scenario
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from tests.support.processes import Processes, free_port
from tests.support.proxy import TcpProxy
from tests.support.smtp import SmtpSink

from bench import fill as filling

RESULTS = Path(__file__).parent / "results" / "faults.json"
README = Path(__file__).parent / "README.md"
_START, _END = "<!-- faults:start -->", "<!-- faults:end -->"


class Run(Processes):
    """One scenario's servers and processes."""

    def __init__(
        self,
        engine: Engine,
        sink: SmtpSink,
        postgres: TcpProxy,
        redis: TcpProxy,
        env: dict[str, str],
        logs: Path,
        attempts: int,
    ) -> None:
        super().__init__(env, logs)
        self.engine = engine
        self.sink = sink
        self.postgres = postgres
        self.redis = redis
        self.attempts = attempts
        self.notes: dict[str, Any] = {}

    def received(self) -> int:
        return len(self.sink.messages)

    def wait_received(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.received() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.received()} of {count} messages arrived")
            time.sleep(0.05)

    def settled(self) -> bool:
        """Every attempt advanced or ended, and no log row left in the engine's hands."""
        with self.engine.connect() as connection:
            open_steps = connection.execute(
                text(
                    "SELECT count(*) FROM recovery_attempts WHERE retry_count = 0 "
                    "AND status IN ('created', 'sent', 'opened')"
                )
            ).scalar_one()
            unsettled = connection.execute(
                text(
                    "SELECT count(*) FROM notification_logs "
                    "WHERE status IN ('pending', 'handing_over')"
                )
            ).scalar_one()
        return int(open_steps) == 0 and int(unsettled) == 0


def _wait_settled(run: Run, timeout: float) -> float:
    started = time.monotonic()
    while not run.settled():
        if time.monotonic() - started > timeout:
            run.notes["incomplete"] = True
            break
        time.sleep(0.2)
    return time.monotonic() - started


def _pay(run: Run, count: int, *, unreminded_only: bool = True) -> dict[int, float]:
    """Complete `count` open attempts (by default only those whose customer has no message
    yet); their commit times (`time.monotonic()`)."""
    received = {m.rcpt_tos[0] for m in run.sink.messages} if unreminded_only else set()
    with run.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT a.id, t.customer_email FROM recovery_attempts a "
                "JOIN transactions t ON t.id = a.transaction_id "
                "WHERE a.status IN ('created', 'sent', 'opened') AND a.retry_count = 0 "
                "ORDER BY a.id DESC"
            )
        ).all()
    paid: dict[int, float] = {}
    for attempt_id, email in rows:
        if len(paid) >= count:
            break
        if email in received:
            continue
        with run.engine.begin() as connection:
            done = connection.execute(
                text(
                    "UPDATE recovery_attempts SET status = 'completed', completed_at = now(), "
                    "completed_after_step = retry_count, next_retry_at = NULL, "
                    "updated_at = now() WHERE id = :id "
                    "AND status IN ('created', 'sent', 'opened') RETURNING id"
                ),
                {"id": attempt_id},
            ).first()
        if done is not None:
            paid[attempt_id] = time.monotonic()
    return paid


# --- the faults -------------------------------------------------------------------------------


def kill(run: Run) -> None:
    worker = run.start("worker")
    run.start_beat()
    run.wait_received(run.attempts // 4)
    run.signal(worker, signal.SIGKILL)
    worker.wait(10)
    run.notes["received_at_kill"] = run.received()
    killed_at = time.monotonic()
    run.start("worker")
    _wait_settled(run, 600)
    run.notes["recovery_s"] = round(time.monotonic() - killed_at, 1)


def kill_serve(run: Run) -> None:
    """The embedded default: `serve` without Redis runs the queue in-process; kill it."""
    run.env.pop("REDIS_URL", None)
    run.env["SCHEDULER_INTERVAL_SECONDS"] = "1"

    def serve() -> subprocess.Popen[bytes]:
        return run.start("serve", "--no-migrate", f"--port={free_port()}")

    server = serve()
    run.wait_received(run.attempts // 4)
    run.signal(server, signal.SIGKILL)
    server.wait(10)
    run.notes["received_at_kill"] = run.received()
    killed_at = time.monotonic()
    serve()
    _wait_settled(run, 600)
    run.notes["recovery_s"] = round(time.monotonic() - killed_at, 1)


def _restart(proxy_of: Callable[[Run], TcpProxy]) -> Callable[[Run], None]:
    def scenario(run: Run) -> None:
        run.start("worker")
        run.start_beat()
        run.wait_received(run.attempts // 4)
        proxy = proxy_of(run)
        proxy.go_down()
        time.sleep(6)
        proxy.come_back()
        _wait_settled(run, 600)

    return scenario


def paid_while_sending(run: Run) -> None:
    run.sink.latency = 0.5  # messages spend long enough in flight for payments to meet them
    run.start("worker")
    run.start_beat()
    run.wait_received(run.attempts // 10)
    paid = _pay(run, 200)
    _wait_settled(run, 600)
    emails = _emails(run.engine, list(paid))
    late = [
        m.received_at - paid[emails[m.rcpt_tos[0]]]
        for m in run.sink.messages
        if m.rcpt_tos[0] in emails and m.received_at > paid[emails[m.rcpt_tos[0]]]
    ]
    run.notes.update(
        paid=len(paid),
        reminded_after_payment=len(late),
        window_ms=round(max(late) * 1000, 1) if late else 0.0,
    )


def smtp_down(run: Run) -> None:
    run.sink.down = True
    run.start("worker")
    run.start_beat()
    time.sleep(60)
    run.sink.down = False
    back = time.monotonic()
    _wait_settled(run, 1200)
    run.notes["all_out_after_s"] = round(time.monotonic() - back, 1)


def smtp_hung(run: Run) -> None:
    run.sink.hang_seconds = 60.0
    run.start("worker")
    run.start_beat()
    time.sleep(60)
    run.sink.hang_seconds = 0.0
    _wait_settled(run, 900)


def stalled_owner(run: Run) -> None:
    run.sink.latency = 0.5
    worker = run.start("worker")
    run.start_beat()
    run.wait_received(run.attempts // 4)
    run.signal(worker, signal.SIGSTOP)  # alive, holding its steps, doing nothing
    run.start("worker")
    lease = float(run.env["QUEUE_LEASE_SECONDS"])
    time.sleep(lease * 2)
    run.signal(worker, signal.SIGCONT)  # it wakes up past its lease and carries on
    _wait_settled(run, 600)


def killed_then_paid(run: Run) -> None:
    worker = run.start("worker")
    run.start_beat()
    run.wait_received(run.attempts // 4)
    run.signal(worker, signal.SIGKILL)
    worker.wait(10)
    paid = _pay(run, run.attempts, unreminded_only=False)
    run.notes["paid"] = len(paid)
    run.start("worker")  # Beat's queue pass runs on a worker
    _wait_settled(run, 120)


SCENARIOS: dict[str, tuple[str, str, Callable[[Run], None]]] = {
    # name: (fault, what the issue measured before, scenario)
    "kill": (
        "worker SIGKILLed mid-batch",
        "≈ 400 duplicate e-mails per kill",
        kill,
    ),
    "kill_serve": (
        "embedded `serve` SIGKILLed mid-batch",
        "231 duplicates",
        kill_serve,
    ),
    "postgres": (
        "PostgreSQL restarted for 6 s while messages were out",
        "349 duplicates",
        _restart(lambda run: run.postgres),
    ),
    "redis": (
        "Redis restarted for 6 s while messages were out",
        "0 duplicates, 0 lost",
        _restart(lambda run: run.redis),
    ),
    "paid": (
        "200 customers paid while their step was being sent",
        "200 of 200 still got the reminder",
        paid_while_sending,
    ),
    "smtp_down": (
        "SMTP server down for 60 s",
        "1,600 of 2,000 first reminders lost",
        smtp_down,
    ),
    "smtp_hung": (
        "SMTP server hung 60 s (reply to DATA late)",
        "206 duplicates; delivered messages logged failed",
        smtp_hung,
    ),
    "stalled": (
        "a live but slow worker (SIGSTOP) past the lease",
        "both send (16 of 30)",
        stalled_owner,
    ),
    "killed_paid": (
        "killed, then paid",
        "pending log rows forever",
        killed_then_paid,
    ),
}


def _emails(engine: Engine, attempt_ids: list[int]) -> dict[str, int]:
    if not attempt_ids:
        return {}
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT t.customer_email, a.id FROM recovery_attempts a "
                "JOIN transactions t ON t.id = a.transaction_id WHERE a.id = ANY(:ids)"
            ),
            {"ids": attempt_ids},
        ).all()
    return {str(email): int(attempt_id) for email, attempt_id in rows}


def _count(run: Run) -> dict[str, Any]:
    per_customer = Counter(m.rcpt_tos[0] for m in run.sink.messages)
    with run.engine.connect() as connection:
        statuses = {
            str(s): int(n)
            for s, n in connection.execute(
                text("SELECT status, count(*) FROM notification_logs GROUP BY status")
            )
        }
        sent_emails = {
            str(r[0])
            for r in connection.execute(
                text("SELECT recipient FROM notification_logs WHERE status = 'sent'")
            )
        }
    return {
        "received": len(run.sink.messages),
        "duplicates": sum(n - 1 for n in per_customer.values()),
        "statuses": statuses,
        # logged sent but never arrived, or given up (failed), or never settled
        "lost": len(sent_emails - set(per_customer))
        + statuses.get("failed", 0)
        + statuses.get("pending", 0)
        + statuses.get("handing_over", 0),
    }


def run_scenario(
    name: str, *, admin_url: str, redis_url: str, attempts: int, lease: int
) -> dict[str, Any]:
    url = filling.create_database(admin_url, "faults")
    from stealth_recovery.core.database import make_engine

    engine = make_engine(url)
    sink = SmtpSink(latency=0.1).start()
    pg_url, rd_url = make_url(url), make_url(redis_url)
    postgres = TcpProxy(pg_url.host or "127.0.0.1", pg_url.port or 5432).start()
    redis_proxy = TcpProxy(rd_url.host or "127.0.0.1", rd_url.port or 6379).start()
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    try:
        filling.migrate(engine)
        filling.fill(engine, rows=attempts, due=attempts)
        env = {
            **os.environ,
            "DATABASE_URL": pg_url.set(host=postgres.host, port=postgres.port).render_as_string(
                hide_password=False
            ),
            "REDIS_URL": rd_url.set(host=redis_proxy.host, port=redis_proxy.port).render_as_string(
                hide_password=False
            ),
            "SMTP_HOST": sink.host,
            "SMTP_PORT": str(sink.port),
            "SMTP_SECURITY": "none",
            "QUEUE_LEASE_SECONDS": str(lease),
            "BEAT_QUEUE_INTERVAL_SECONDS": "1",
            "LOG_LEVEL": "WARNING",
        }
        for variable in ("SMTP_USER", "SMTP_PASSWORD", "CELERY_BROKER_URL"):
            env.pop(variable, None)
        with tempfile.TemporaryDirectory(prefix="sr-faults-") as folder:
            run = Run(engine, sink, postgres, redis_proxy, env, Path(folder), attempts)
            started = time.monotonic()
            try:
                SCENARIOS[name][2](run)
            finally:
                run.stop_all(timeout=20)
            result = {"scenario": name, "seconds": round(time.monotonic() - started, 1)}
            result.update(_count(run))
            result.update(run.notes)
    finally:
        sink.stop()
        postgres.stop()
        redis_proxy.stop()
        engine.dispose()
        filling.drop_database(admin_url, url)
        redis.Redis.from_url(redis_url).flushdb()
    return result


def render(results: list[dict[str, Any]]) -> str:
    lines = ["| fault | before | measured now | bound |", "| --- | --- | --- | --- |"]
    for result in results:
        fault, before, _ = SCENARIOS[result["scenario"]]
        statuses = result["statuses"]
        now = (
            f"{result['duplicates']} duplicates, {result['lost']} lost, "
            f"{statuses.get('unconfirmed', 0)} unconfirmed"
        )
        bound = (
            "0 duplicates; unconfirmed ≤ the steps handed over and not yet recorded: "
            "≤ 200 (SEND_CONCURRENCY) per worker process"
        )
        if result["scenario"] in ("kill", "kill_serve"):
            now += f"; all out {result.get('recovery_s')} s after the kill"
            bound += "; recovery ≤ one lease + one Beat interval"
        elif result["scenario"] == "paid":
            now = (
                f"{result.get('reminded_after_payment')} of {result.get('paid')} reminded after "
                f"paying (window {result.get('window_ms')} ms); " + now
            )
            bound = "only messages whose hand-over mark was written before the payment's commit"
        elif result["scenario"] == "smtp_down":
            now += f"; all out {result.get('all_out_after_s')} s after the server came back"
            bound = "0 lost before the 6 h step deadline; first retry 30 s, then 1, 2 … 30 min"
        elif result["scenario"] == "smtp_hung":
            bound = "0 duplicates; late answers are unconfirmed, never failed or resent"
        elif result["scenario"] == "killed_paid":
            now = (
                f"{statuses.get('pending', 0) + statuses.get('handing_over', 0)} rows pending; "
                + (
                    f"{statuses.get('cancelled', 0)} cancelled, {statuses.get('unconfirmed', 0)} "
                    "unconfirmed"
                )
            )
            bound = "0 rows pending after one queue pass"
        if result.get("incomplete"):
            now += " (did not settle in time)"
        lines.append(f"| {fault} | {before} | {now} | {bound} |")
    return "\n".join(lines)


def main(
    only: list[str] = typer.Option([], help="scenarios to run (default: all)"),
    attempts: int = typer.Option(2000, help="due attempts per scenario"),
    lease: int = typer.Option(15, help="QUEUE_LEASE_SECONDS for the processes"),
    postgres_url: str = typer.Option(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", help="admin URL"
    ),
    redis_url: str = typer.Option("redis://127.0.0.1:6379/15", help="flushed before and after"),
    output: Path = typer.Option(RESULTS),
    readme: bool = typer.Option(True, help="write the table into bench/README.md"),
) -> None:
    """Run the fault scenarios and print the table."""
    names = only or list(SCENARIOS)
    results = []
    for name in names:
        if name not in SCENARIOS:
            raise typer.BadParameter(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
        print(f"running {name} …", file=sys.stderr, flush=True)
        result = run_scenario(
            name, admin_url=postgres_url, redis_url=redis_url, attempts=attempts, lease=lease
        )
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)
    table = render(results)
    print(table)
    if readme and not only:
        text_ = README.read_text()
        head, _, rest = text_.partition(_START)
        _, _, tail = rest.partition(_END)
        stamp = f"Measured {datetime.now(UTC):%Y-%m-%d}, {attempts} attempts per scenario:"
        README.write_text(f"{head}{_START}\n{stamp}\n\n{table}\n{_END}{tail}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "attempts": attempts,
                "lease_seconds": lease,
                "results": results,
                "table": table,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    threading.excepthook = lambda args: None  # a proxy pipe torn down mid-read is expected
    typer.run(main)
