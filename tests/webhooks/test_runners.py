"""Both layouts deliver: the embedded loop in the API process (no Redis) and real Celery worker
and Beat processes over Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.security import encrypt_secret
from stealth_recovery.webhooks.models import EventType, WebhookEndpoint
from stealth_recovery.webhooks.scheduler import DeliveryLoop
from stealth_recovery.webhooks.service import on_new_events, record_event
from tests.support.builders import Account, make_account
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _endpoint(db: Session, account: Account, url: str) -> None:
    db.add(
        WebhookEndpoint(
            organization_id=account.organization.id,
            url=url,
            event_types=[],
            secret=encrypt_secret(SECRET),
            enabled=True,
        )
    )
    db.commit()


def _record(account: Account) -> None:
    with session_scope() as session:
        record_event(
            session,
            account.organization.id,
            EventType.attempt_opened,
            {"object": "attempt", "attempt": {"id": 1}},
        )


class TestEmbeddedLoop:
    def test_a_committed_event_wakes_the_loop(self, db: Session, receiver: WebhookReceiver) -> None:
        # Given the embedded loop with a long period, woken by new events as `serve` wires it
        account = make_account(db)
        _endpoint(db, account, receiver.url)
        loop = DeliveryLoop(interval_seconds=300)
        on_new_events(loop.wake)
        loop.start()
        try:
            # When an event commits
            _record(account)
            # Then it arrives without waiting for the period
            [request] = receiver.wait_for(1, timeout=10)
        finally:
            loop.stop()
        assert Webhook(SECRET).verify(request.body, request.headers)["type"] == "attempt.opened"


@pytest.fixture
def celery_env(
    database_url: str, redis_url: str, tmp_path: Path, postgres_only: None
) -> Iterator[dict[str, str]]:
    redis.Redis.from_url(redis_url).flushdb()
    yield {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WEBHOOK_SWEEP_SECONDS": "1",
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "LOG_LEVEL": "WARNING",
    }
    redis.Redis.from_url(redis_url).flushdb()


@pytest.mark.slow
class TestCeleryWorker:
    def test_beat_and_a_worker_deliver(
        self,
        db: Session,
        receiver: WebhookReceiver,
        celery_env: dict[str, str],
        tmp_path: Path,
    ) -> None:
        # Given an event waiting for an endpoint
        account = make_account(db)
        _endpoint(db, account, receiver.url)
        _record(account)
        # When a Celery worker and Beat run
        processes = []
        for args in (
            ["worker", "--concurrency=1"],
            ["beat", "--schedule-file", str(tmp_path / "beat-schedule")],
        ):
            log = open(tmp_path / f"{args[0]}.log", "ab")  # noqa: SIM115 - closed below
            processes.append(
                (
                    subprocess.Popen(
                        [sys.executable, "-m", "stealth_recovery.cli", *args],
                        env=celery_env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    ),
                    log,
                )
            )
        try:
            # Then the receiver gets it, signed
            [request] = receiver.wait_for(1, timeout=60)
        finally:
            for process, log in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)
                log.close()
        assert Webhook(SECRET).verify(request.body, request.headers)["type"] == "attempt.opened"
