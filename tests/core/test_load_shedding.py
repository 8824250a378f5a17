"""Overload: a real server, many more concurrent requests than database connections.

Every request is answered, either done or refused at once with 503 and Retry-After, and some
complete: throughput never drops to zero while everyone waits out the pool's timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from stealth_recovery.auth.service import create_api_key
from tests.support.builders import make_account
from tests.support.processes import free_port, wait_until_healthy

CONNECTIONS = 2
CONCURRENT = 64


@pytest.fixture
def small_server(database_url: str, postgres_only: None, tmp_path: Path) -> Iterator[str]:
    """`serve` on the test database with a pool of CONNECTIONS connections."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATABASE_POOL_SIZE": str(CONNECTIONS),
        "EMBEDDED_SCHEDULER": "false",
        "LOG_LEVEL": "WARNING",
    }
    for name in ("REDIS_URL", "BASE_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stealth_recovery.cli",
            "serve",
            "--port",
            str(port),
            "--no-migrate",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


class TestOverload:
    def test_every_request_is_done_or_refused_at_once_and_some_are_done(
        self, db: Session, small_server: str
    ) -> None:
        # Given a server with two database connections and an organization's API key
        account = make_account(db)
        _, key = create_api_key(
            db, organization_id=account.organization.id, name="billing", created_by_id=None
        )
        db.commit()

        def report(n: int) -> httpx.Response:
            return httpx.post(
                f"{small_server}/v1/events/payment_failed",
                headers={"X-API-Key": key},
                json={
                    "transaction_ref": f"inv_{n}",
                    "amount_minor": 1200,
                    "currency": "EUR",
                    "customer_email": "jane@example.com",
                    "occurred_at": "2026-11-28T09:00:00Z",
                },
                timeout=25,  # below the pool's 30 s timeout: waiting it out is a failure
            )

        # When 64 failed payments are reported at once, twice over
        with ThreadPoolExecutor(CONCURRENT) as pool:
            responses = list(pool.map(report, range(2 * CONCURRENT)))
        # Then each is either recorded or refused with a Retry-After, nothing else
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {201, 503}, statuses
        for refused in (r for r in responses if r.status_code == 503):
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["type"] == "service_busy"
        # And some are recorded
        assert statuses.count(201) > 0, statuses
