"""Real Celery worker and Beat processes over Redis, against the test database and SMTP sink."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.recovery.models import RecoveryAttempt
from tests.support.builders import make_account, make_attempt, make_policy
from tests.support.processes import Processes, free_port, wait_until
from tests.support.proxy import TcpProxy
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.slow


@pytest.fixture
def processes(
    database_url: str, redis_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> Iterator[Processes]:
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_HOST": smtp_sink.host,
        "SMTP_PORT": str(smtp_sink.port),
        "QUEUE_LEASE_SECONDS": "10",
        "BEAT_QUEUE_INTERVAL_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    procs = Processes(env, tmp_path)
    yield procs
    procs.stop_all()
    redis.Redis.from_url(redis_url).flushdb()


def _count(db: Session, *criteria: object) -> int:
    db.expire_all()
    stmt = select(func.count()).select_from(RecoveryAttempt).where(*criteria)  # type: ignore[arg-type]
    return int(db.scalar(stmt) or 0)


class TestBeatAndWorker:
    def test_due_attempt_goes_out_through_beat_and_a_worker(
        self, db: Session, smtp_sink: SmtpSink, processes: Processes, postgres_only: None
    ) -> None:
        # Given a due attempt and the seed's policy
        account = make_account(db)
        make_policy(db, account.organization, initial_delay_minutes=60, backoff_multiplier=2)
        attempt = make_attempt(db, account.organization, email="e2e@example.com")
        # When Beat, a worker and Flower run
        flower_port = free_port()
        processes.env["FLOWER_UNAUTHENTICATED_API"] = "true"
        processes.start("flower", f"--port={flower_port}", name="flower")
        metrics_port = free_port()
        processes.env["WORKER_METRICS_PORT"] = str(metrics_port)
        processes.start("worker", "--concurrency=1", name="worker")
        processes.start_beat()
        # Then the message arrives with the right recipient, subject and link
        (message,) = smtp_sink.wait_for(1, timeout=60)
        assert message.rcpt_tos == ["e2e@example.com"]
        assert account.organization.name in message.subject
        assert f"/pay/{attempt.token}" in message.body("plain")
        # And the log is sent and the next reminder is two hours later
        wait_until(lambda: _count(db, RecoveryAttempt.retry_count == 1) == 1, 30, "record")
        db.expire_all()
        log = db.scalar(select(NotificationLog))
        assert log is not None and log.status == "sent" and log.provider_message_id
        fresh = db.get(RecoveryAttempt, attempt.id)
        assert fresh is not None and fresh.last_retry_at and fresh.next_retry_at
        assert (fresh.next_retry_at - fresh.last_retry_at).total_seconds() == 120 * 60
        # And Flower shows the tasks that did it
        seen: set[str] = set()

        def flower_saw_tasks() -> bool:
            try:
                reply = httpx.get(f"http://127.0.0.1:{flower_port}/api/tasks", timeout=2)
            except httpx.HTTPError:
                return False
            seen.update(task.get("name") or "" for task in reply.json().values())
            return {"retry.process_retry_queue", "retry.send_recovery_batch"} <= seen

        wait_until(flower_saw_tasks, 30, "Flower to list the tasks")
        # And the worker's own /metrics counts the message
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'stealth_recovery_messages_total{channel="email",status="sent"} 1.0' in metrics
        assert "stealth_recovery_send_seconds_bucket" in metrics


def _fault_outcome(db: Session, smtp_sink: SmtpSink, total: int) -> dict[str, int]:
    """Wait until every attempt has its step, then count what the customers got."""
    wait_until(lambda: _count(db, RecoveryAttempt.retry_count == 1) == total, 120, "every step")
    per_recipient = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    db.expire_all()
    logs = list(db.scalars(select(NotificationLog)))
    statuses = Counter(log.status for log in logs)
    sent_to = {log.recipient for log in logs if log.status == "sent"}
    return {
        "rows": len(logs),
        "duplicates": sum(n - 1 for n in per_recipient.values()),
        # a row recorded sent whose message never arrived, or a customer with nothing at all
        "lost": len(sent_to - set(per_recipient))
        + sum(1 for log in logs if log.status not in ("sent", "unconfirmed")),
        "unconfirmed": statuses["unconfirmed"],
        "received": len(smtp_sink.messages),
    }


def _due(db: Session, total: int, prefix: str) -> None:
    account = make_account(db)
    for i in range(total):
        make_attempt(db, account.organization, email=f"{prefix}{i}@example.com")


class TestWorkerKilled:
    def test_sigkill_mid_batch_sends_nothing_twice(
        self, db: Session, smtp_sink: SmtpSink, processes: Processes, postgres_only: None
    ) -> None:
        # Given 300 due attempts, a slow SMTP server, and the default chunk and pool sizes
        total = 300
        _due(db, total, "k")
        smtp_sink.latency = 0.3
        worker = processes.start("worker", "--concurrency=1", name="worker-1")
        processes.start_beat()
        # When the worker is killed with SIGKILL in the middle of the batch
        smtp_sink.wait_for(40, timeout=60)
        processes.kill(worker)
        received_at_kill = len(smtp_sink.messages)
        assert received_at_kill < total, "the worker finished before it could be killed"
        # And a new worker starts
        processes.start("worker", "--concurrency=1", name="worker-2")
        # Then after one lease every attempt has its step, and nobody got a message twice
        outcome = _fault_outcome(db, smtp_sink, total)
        print(f"\nSIGKILL: {received_at_kill} received before the kill, {outcome}")
        assert outcome["rows"] == total
        assert outcome["duplicates"] == 0
        assert outcome["lost"] == 0
        # Only messages at the server at the kill can be unconfirmed: one pool's worth at most
        assert outcome["unconfirmed"] <= 200


class TestServerRestarts:
    @pytest.mark.parametrize("server", ["postgresql", "redis"])
    def test_a_restart_while_messages_are_out_loses_and_repeats_nothing(
        self,
        server: str,
        db: Session,
        smtp_sink: SmtpSink,
        processes: Processes,
        postgres_only: None,
        database_url: str,
        redis_url: str,
    ) -> None:
        # Given 300 due attempts, and workers that reach the server through a proxy
        total = 300
        _due(db, total, "r")
        smtp_sink.latency = 0.1
        url = make_url(database_url if server == "postgresql" else redis_url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 0).start()
        try:
            proxied = url.set(host=proxy.host, port=proxy.port).render_as_string(
                hide_password=False
            )
            processes.env["DATABASE_URL" if server == "postgresql" else "REDIS_URL"] = proxied
            processes.start("worker", "--concurrency=2", name="worker")
            processes.start_beat()
            # When the server goes away for 6 s while messages are out
            smtp_sink.wait_for(30, timeout=60)
            proxy.go_down()
            time.sleep(6)
            proxy.come_back()
            # Then every attempt has its step, nothing twice, nothing lost
            outcome = _fault_outcome(db, smtp_sink, total)
        finally:
            proxy.stop()
        print(f"\n{server} restart: {outcome}")
        assert outcome["rows"] == total
        assert outcome["duplicates"] == 0
        assert outcome["lost"] == 0
