"""`/healthz`, and `stealth-recovery serve` on the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from stealth_recovery.core.database import make_engine
from stealth_recovery.core.settings import get_settings
from tests.support.processes import free_port


class TestHealth:
    def test_reports_the_database(self, client: TestClient) -> None:
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json()["database"] == "ok"
        assert "redis" not in response.json()

    def test_reports_redis_when_configured(
        self, client: TestClient, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REDIS_URL", redis_url)
        get_settings.cache_clear()
        response = client.get("/healthz")
        assert (response.status_code, response.json()["redis"]) == (200, "ok")

    def test_unreachable_redis_is_degraded(
        self, client: TestClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
        get_settings.cache_clear()
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "degraded"
        assert response.json()["redis"].startswith("error")


class TestServe:
    def test_serve_migrates_a_fresh_sqlite_file_and_answers(self, tmp_path: Path) -> None:
        # Given no database at all, and no Redis
        database = tmp_path / "fresh.db"
        port = free_port()
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "LOG_LEVEL": "WARNING"}
        env.pop("REDIS_URL", None)
        # When the service starts the way the README says
        process = subprocess.Popen(
            [sys.executable, "-m", "stealth_recovery.cli", "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            body = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and body is None:
                try:
                    body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
                except httpx.HTTPError:
                    time.sleep(0.3)
            # Then it answers healthy on a schema the migrations made
            assert body is not None and body["status"] == "ok"
        finally:
            process.terminate()
            output = process.communicate(timeout=20)[0].decode()
        assert "embedded scheduler" in output
        tables = set(inspect(make_engine(f"sqlite:///{database}")).get_table_names())
        assert {"alembic_version", "recovery_attempts", "notification_logs"} <= tables


class TestRoot:
    def test_the_bare_address_leads_to_the_dashboard_login(self, client: TestClient) -> None:
        response = client.get("/", follow_redirects=True)
        assert response.status_code == 200
        assert str(response.url).endswith("/dashboard/login?next=%2Fdashboard")
        assert "Log in" in response.text
