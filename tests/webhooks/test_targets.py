"""No server-side request forgery: URLs are checked at save and, with a fresh DNS lookup, at
every delivery (DNS rebinding)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.core.settings import get_settings
from stealth_recovery.webhooks.delivery import deliver_due
from stealth_recovery.webhooks.models import WebhookAttempt, WebhookEndpoint
from stealth_recovery.webhooks.targets import UnsafeTarget, resolve_target
from tests.support.builders import make_account
from tests.support.webhook_receiver import WebhookReceiver, fake_dns


class TestRefusedAtSave:
    @pytest.mark.parametrize(
        ("url", "rule"),
        [
            ("http://127.0.0.1:8000/hooks", "loopback"),
            ("http://localhost/hooks", "loopback"),
            ("http://[::1]/hooks", "loopback"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://10.0.0.1/hooks", "private"),
            ("http://192.168.1.10/hooks", "private"),
            ("http://0.0.0.0/hooks", "reserved"),
            ("http://internal.example/hooks", "private address (10.0.0.1)"),
            ("ftp://example.com/hooks", "must be http or https"),
            ("http://user:pw@example.com/hooks", "user name or password"),
            ("/relative", "must be http or https"),
            ("http:///hooks", "must name a host"),
        ],
    )
    def test_ssrf_targets_are_a_422_naming_the_url_and_the_rule(
        self,
        client: TestClient,
        db: Session,
        monkeypatch: pytest.MonkeyPatch,
        url: str,
        rule: str,
    ) -> None:
        # Given a DNS name that resolves to a private address
        fake_dns(monkeypatch, {"internal.example": "10.0.0.1"})
        account = make_account(db)
        # When an endpoint is saved with an unsafe URL
        response = client.post("/v1/webhook-endpoints", json={"url": url}, headers=account.headers)
        # Then it is refused, naming the field and the rule, and nothing is stored
        assert response.status_code == 422, response.text
        [problem] = response.json()["detail"]
        assert problem["field"] == "url"
        assert rule in problem["msg"]
        assert db.scalar(select(WebhookEndpoint)) is None

    def test_production_requires_https(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake_dns(monkeypatch, {"hooks.example": "93.184.216.34"})
        monkeypatch.setattr(get_settings(), "environment", "production")
        with pytest.raises(UnsafeTarget, match="must use https"):
            resolve_target("http://hooks.example/in")
        target = resolve_target("https://hooks.example:8443/in")
        assert target.url == "https://93.184.216.34:8443/in"
        assert target.host == "hooks.example"
        assert target.host_header == "hooks.example:8443"


class TestCheckedAtEveryDelivery:
    def test_a_name_rebound_to_loopback_after_the_save_is_refused(
        self,
        client: TestClient,
        db: Session,
        receiver: WebhookReceiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Given an endpoint saved while its name resolved to a public address
        monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_TARGETS", "false")
        get_settings.cache_clear()
        fake_dns(monkeypatch, {"hooks.example": "93.184.216.34"})
        account = make_account(db)
        port = receiver.url.split(":")[2].split("/")[0]
        response = client.post(
            "/v1/webhook-endpoints",
            json={"url": f"http://hooks.example:{port}/hooks"},
            headers=account.headers,
        )
        assert response.status_code == 201, response.text
        # When the name now resolves to 127.0.0.1, where the receiver listens, and a pass runs
        fake_dns(monkeypatch, {"hooks.example": "127.0.0.1"})
        client.post(
            "/v1/events/payment_failed",
            json={
                "transaction_ref": "inv_1",
                "amount_minor": 100,
                "currency": "EUR",
                "customer_email": "a@example.com",
                "occurred_at": "2026-11-01T12:00:00Z",
            },
            headers=account.headers,
        )
        deliver_due()
        # Then nothing reached the loopback address, and the try says why
        assert receiver.received == []
        [attempt] = db.scalars(select(WebhookAttempt)).all()
        assert attempt.succeeded is False
        assert attempt.error == "refused: url must not resolve to a loopback address (127.0.0.1)"
