"""Every door: body size (413 before the body is read whole), NUL in URLs, security headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from stealth_recovery.core.settings import get_settings
from stealth_recovery.payments.models import Transaction
from tests.support.builders import api_key_headers, make_account, make_attempt
from tests.support.web import post_form, web_login

LIMIT = 4096


@pytest.fixture
def small_bodies(db: Session, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("MAX_BODY_BYTES", str(LIMIT))
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        yield client


def _transactions(db: Session) -> int:
    db.rollback()
    return int(db.scalar(select(func.count()).select_from(Transaction)) or 0)


class TestBodySize:
    def test_a_declared_oversized_json_body_is_413_and_stores_nothing(
        self, small_bodies: TestClient, db: Session
    ) -> None:
        # Given an API key of a merchant
        headers = api_key_headers(db, make_account(db).organization)
        # When a failure report carries metadata past the limit
        body = {
            "transaction_ref": "inv_1",
            "amount_minor": 100,
            "currency": "EUR",
            "customer_email": "a@example.com",
            "occurred_at": "2026-11-01T12:00:00Z",
            "metadata": {"blob": "x" * (LIMIT * 2)},
        }
        response = small_bodies.post("/v1/events/payment_failed", json=body, headers=headers)
        # Then it is refused as too large, and nothing is stored
        assert response.status_code == 413
        assert "detail" in response.json()
        assert _transactions(db) == 0

    def test_a_streamed_body_without_length_is_cut_off_at_the_limit(
        self, small_bodies: TestClient, db: Session
    ) -> None:
        # Given a client that streams its body in chunks (no Content-Length)
        sent: list[int] = []

        def chunks() -> Iterator[bytes]:
            for _ in range(64):
                sent.append(1)
                yield b"x" * 1024

        # When it posts 64 KiB to a webhook
        response = small_bodies.post(
            "/v1/webhooks/whatsapp",
            content=chunks(),
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"},
        )
        # Then the answer is 413, not a signature check of a body read whole
        assert response.status_code == 413

    def test_an_oversized_dashboard_form_is_413(self, small_bodies: TestClient) -> None:
        response = small_bodies.post(
            "/dashboard/login", data={"email": "a@example.com", "password": "p" * (LIMIT * 2)}
        )
        assert response.status_code == 413

    def test_a_body_under_the_limit_is_read(self, small_bodies: TestClient, db: Session) -> None:
        headers = api_key_headers(db, make_account(db).organization)
        body = {
            "transaction_ref": "inv_2",
            "amount_minor": 100,
            "currency": "EUR",
            "customer_email": "a@example.com",
            "occurred_at": "2026-11-01T12:00:00Z",
        }
        response = small_bodies.post("/v1/events/payment_failed", json=body, headers=headers)
        assert response.status_code == 201, response.text

    def test_the_default_limit_is_one_mebibyte(self) -> None:
        assert get_settings().max_body_bytes == 1_048_576


class TestNulInUrls:
    @pytest.mark.parametrize(
        "path",
        [
            "/pay/abc%00def",
            "/pay/abc%00/success",
            "/v1/webhooks/stripe/acme%00",
            "/v1/attempts?cursor=%00",
            "/dashboard/attempts?q=a%00b",
            "/dashboard/static/dashboard.css%00",
        ],
    )
    def test_is_a_400_whatever_the_route(self, client: TestClient, path: str) -> None:
        for method in ("GET", "POST"):
            response = client.request(method, path)
            assert response.status_code == 400, (method, path, response.text)
            assert "NUL" in response.json()["detail"]


class TestSecurityHeaders:
    def test_every_html_page_forbids_scripts_framing_and_sniffing(
        self, client: TestClient, db: Session
    ) -> None:
        account = make_account(db)
        token = make_attempt(db, account.organization).token
        web_login(client, account.user.email)
        for path in ("/dashboard/login", "/dashboard", f"/pay/{token}", "/pay/unknown-token"):
            response = client.get(path)
            assert response.headers["content-type"].startswith("text/html"), path
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
            assert response.headers["X-Frame-Options"] == "DENY", path
            assert response.headers["Referrer-Policy"] == "no-referrer", path

    def test_the_pay_page_never_sends_its_token_as_referer(
        self, client: TestClient, db: Session
    ) -> None:
        token = make_attempt(db, make_account(db).organization).token
        for response in (client.get(f"/pay/{token}"), client.post(f"/pay/{token}/pay")):
            assert response.headers["Referrer-Policy"] == "no-referrer"

    def test_json_answers_are_not_sniffed_and_have_no_page_policy(self, client: TestClient) -> None:
        response = client.get("/healthz")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Strict-Transport-Security" not in response.headers  # BASE_URL is http here

    def test_https_base_url_adds_hsts_and_secure_on_every_cookie(
        self, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a service published over https
        monkeypatch.setenv("BASE_URL", "https://recover.example.com")
        get_settings.cache_clear()
        account = make_account(db)
        with TestClient(create_app(), base_url="https://testserver") as client:
            # When a browser opens the login form, then logs in and out (cookie set, cleared)
            login_page = client.get("/dashboard/login")
            web_login(client, account.user.email)
            logout = post_form(client, "/dashboard", "/dashboard/logout", {})
        # Then HSTS is sent and no cookie ever goes out without Secure
        assert login_page.headers["Strict-Transport-Security"].startswith("max-age=")
        cookies = [c for r in (login_page, logout) for c in r.headers.get_list("set-cookie")]
        assert cookies, "expected cookies to be set"
        for cookie in cookies:
            assert "secure" in {p.strip().lower() for p in cookie.split(";")}, cookie
