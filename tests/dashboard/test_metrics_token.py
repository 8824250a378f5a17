"""/metrics needs the bearer token when METRICS_TOKEN is set, and stays open without it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from stealth_recovery.core.settings import get_settings


def test_without_a_token_configured_metrics_are_open(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200


def test_with_a_token_configured_only_its_bearer_may_scrape(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICS_TOKEN", "scrape-token-0123456789")
    get_settings.cache_clear()
    client = TestClient(create_app())
    missing = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    right = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert "stealth_recovery" in right.text
