"""The recorded delivery cases (tests/flows/delivery_cases/*.json), replayed end to end.

Each case is one real-world failure of a kind; its file is loaded as it was recorded and the
test is named after the file's stem. Everything is real: the API over HTTP, the engine's queue,
the aiosmtpd relay, and the loopback Twilio / Graph servers.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import shifted_clock
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.retry.runtime import run_due_now
from tests.support.builders import (
    api_key_headers,
    make_account,
    make_attempt,
    make_log,
    make_policy,
)
from tests.support.mime import ENCODED_WORD, assert_folded, display_name
from tests.support.providers import FakeProviders, twilio_signature
from tests.support.smtp import SmtpSink

CASES = Path(__file__).parent / "delivery_cases"


def load_case(stem: str) -> dict[str, Any]:
    data = json.loads((CASES / f"{stem}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _report(client: TestClient, key: dict[str, str], ref: str, email: str) -> int:
    body = {
        "transaction_ref": ref,
        "amount_minor": 2500,
        "currency": "EUR",
        "customer_email": email,
        "customer_locale": "de_DE",
        "customer_timezone": "Europe/Berlin",
        "decline_code": "insufficient_funds",
        "gateway": "stripe",
        "occurred_at": "2026-11-30T12:00:00Z",
    }
    response = client.post("/v1/events/payment_failed", json=body, headers=key)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _only_log(db: Session, attempt_id: int) -> NotificationLog:
    db.expire_all()
    [row] = db.scalars(select(NotificationLog).where(NotificationLog.attempt_id == attempt_id))
    return row


def test_idn_email_without_smtputf8(client: TestClient, db: Session, smtp_sink: SmtpSink) -> None:
    case = load_case("idn_email_without_smtputf8")
    # Given a relay as the case describes it (no SMTPUTF8) and the customers the API reported
    smtp_sink.smtputf8 = case["relay"]["smtputf8"]
    admin = make_account(db)
    make_policy(db, admin.organization, initial_delay_minutes=60)
    key = api_key_headers(db, admin.organization)
    attempts = {
        step["customer_email"]: _report(client, key, f"inv-{n}", step["customer_email"])
        for n, step in enumerate(case["api"])
    }

    # When the first reminders are due
    with shifted_clock(timedelta(minutes=61)):
        assert run_due_now() == len(attempts)

    # Then each customer's log ends as the case expects, keeping the address as given
    outcomes: dict[str, tuple[str, str | None, str | None]] = {}
    for email, attempt_id in attempts.items():
        row = _only_log(db, attempt_id)
        outcomes[email] = (row.status, row.recipient, row.error_message)
    by_envelope = {tuple(m.rcpt_tos): m for m in smtp_sink.messages}
    for step in case["api"]:
        email, expect = step["customer_email"], step["expect"]
        status, recipient, error = outcomes[email]
        assert recipient == email.rpartition("@")[0] + "@" + email.rpartition("@")[2].lower()
        if expect.startswith("sent to "):
            wire = re.match(r"sent to (\S+) without SMTPUTF8", expect)
            assert wire is not None
            assert status == "sent", error
            received = by_envelope[(wire.group(1),)]
            assert received.smtputf8 is False
            assert_folded(received.raw)
        elif expect == "sent":
            assert status == "sent", error
            # the local part goes out as the customer wrote it
            assert any(r[0].startswith(email.partition("@")[0] + "@") for r in by_envelope)
        else:
            assert expect.startswith("failed") and "SMTPUTF8" in expect
            assert status == "failed"
            assert error is not None and "needs SMTPUTF8" in error
            assert "does not offer SMTPUTF8" in error
    assert len(smtp_sink.messages) == 2


def test_long_nonascii_from_header(db: Session, smtp_sink: SmtpSink) -> None:
    case = load_case("long_nonascii_from_header")
    # Given a merchant whose name is long and not ASCII
    admin = make_account(db)
    admin.organization.name = case["merchant_name"]
    db.commit()
    make_policy(db, admin.organization)
    attempt = make_attempt(db, admin.organization, locale="de")

    # When its reminder goes out
    assert run_due_now() == 1

    # Then the From display name is split into encoded-words of at most 75 characters, on
    # lines of at most 78, and reads back as the merchant's name
    [received] = smtp_sink.wait_for(1)
    raw_from = received.raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\nTo:")[0]
    words = ENCODED_WORD.findall(raw_from)
    assert len(words) >= 2 and all(len(w) <= 75 for w in words)
    assert_folded(received.raw)
    assert display_name(received.raw) == case["merchant_name"]
    assert _only_log(db, attempt.id).status == "sent"


def test_twilio_sync_unsubscribed(
    client: TestClient,
    db: Session,
    smtp_sink: SmtpSink,
    fake_providers: FakeProviders,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = load_case("twilio_sync_unsubscribed")
    monkeypatch.setenv("BASE_URL", "https://recovery.example.test")
    monkeypatch.setenv("PROVIDER_RETRY_BACKOFF_SECONDS", "0")
    get_settings.cache_clear()
    # Given Twilio refuses these numbers at create time, as the case recorded
    for number, error in case["twilio_errors"].items():
        fake_providers.refuse("twilio", number, error["status"], error["code"], error["message"])
    admin = make_account(db)
    make_policy(db, admin.organization, enabled_channels=["sms"])
    attempts = {
        number: make_attempt(db, admin.organization, email=None, phone=number, ref=number).id
        for number in case["twilio_errors"]
    }

    # When their reminders are due
    assert run_due_now() == len(attempts)

    # Then each log is bounced with Twilio's code and words, after a single request each
    for number, attempt_id in attempts.items():
        error = case["twilio_errors"][number]
        row = _only_log(db, attempt_id)
        assert row.status == "bounced"
        assert row.error_message == (
            f"Twilio {error['status']} (error {error['code']}): {error['message']}"
        )
    assert len(fake_providers.requests_to("twilio")) == len(attempts)

    # And the same codes arriving by status callback bounce a sent SMS just the same
    for number, error in case["twilio_errors"].items():
        sid = "SM" + secrets.token_hex(16)
        log = make_log(db, provider_message_id=sid, channel="sms", recipient=number)
        form = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": str(error["code"])}
        url = "https://recovery.example.test/v1/webhooks/twilio/status"
        signature = twilio_signature(url, form, fake_providers.twilio_auth_token)
        answer = client.post(
            "/v1/webhooks/twilio/status", data=form, headers={"X-Twilio-Signature": signature}
        )
        assert answer.status_code == 200
        db.refresh(log)
        assert log.status == "bounced"


def test_twilio_callback_before_send_recorded(
    db: Session, fake_providers: FakeProviders, live_webhooks: str
) -> None:
    case = load_case("twilio_callback_before_send_recorded")
    # Given Twilio posts the case's failed callback before its 201 reaches the worker
    phone = "+34612345678"
    fake_providers.early_status("twilio", phone, **case["early_callback"])
    admin = make_account(db)
    make_policy(db, admin.organization, enabled_channels=["sms"])
    attempt = make_attempt(db, admin.organization, email=None, phone=phone)

    # When the reminder is sent and recorded
    assert run_due_now() == 1

    # Then the callback was held (acknowledged, so Twilio does not retry), and the log ends
    # bounced: 30006 means the number cannot receive
    [(_, sid, http_status, answer)] = fake_providers.callbacks
    assert (http_status, answer) == (200, {"results": ["held"]})
    row = _only_log(db, attempt.id)
    assert (row.provider_message_id, row.status) == (sid, "bounced")
    assert row.error_message == "Twilio failed: error 30006 (landline or unreachable carrier)"
