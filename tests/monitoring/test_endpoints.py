"""/metrics: HTTP metrics by route template, queue depth counted at scrape, and the bearer token
when METRICS_TOKEN is set (open without it)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from tests.support.builders import Account, make_attempt


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"no sample {sample}"
    return float(match.group(1))


class TestHttpMetrics:
    def test_requests_are_labelled_by_route_template_not_by_path(self, client: TestClient) -> None:
        before = client.get("/metrics").text
        sample = (
            'stealth_recovery_http_requests_total{method="GET",'
            'route="/dashboard/attempts/{attempt_id}",status="303"}'
        )
        start = _value(before, sample) if sample in before else 0.0
        client.get("/dashboard/attempts/1234", follow_redirects=False)
        client.get("/dashboard/attempts/5678", follow_redirects=False)
        after = client.get("/metrics").text
        assert _value(after, sample) == start + 2
        assert "/dashboard/attempts/1234" not in after
        assert 'stealth_recovery_http_request_seconds_bucket{le="0.005",method="GET",' in after

    def test_unknown_paths_share_one_label(self, client: TestClient) -> None:
        client.get("/no/such/page/abc123")
        text = client.get("/metrics").text
        assert 'route="<unmatched>",status="404"' in text
        assert "abc123" not in text


class TestQueueDepth:
    def test_counts_open_attempts_due_now(
        self, client: TestClient, admin: Account, db: Session
    ) -> None:
        due = [make_attempt(db, admin.organization, due=False) for _ in range(2)]
        later = make_attempt(db, admin.organization, due=False)
        for attempt in due:
            attempt.next_retry_at = utc_now() - timedelta(minutes=1)
        later.next_retry_at = utc_now() + timedelta(hours=1)
        db.commit()
        text = client.get("/metrics").text
        assert _value(text, "stealth_recovery_queue_depth") == 2.0

    def test_exposes_the_engine_metrics(self, client: TestClient) -> None:
        text = client.get("/metrics").text
        for name in (
            "stealth_recovery_claim_seconds",
            "stealth_recovery_send_seconds",
            "stealth_recovery_messages_total",
            "stealth_recovery_reminder_steps_total",
        ):
            assert f"# TYPE {name}" in text


def test_prometheus_content_type(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")


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
