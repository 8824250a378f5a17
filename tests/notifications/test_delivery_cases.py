"""The recorded delivery cases (tests/notifications/cases/delivery/*.json), replayed end to end.

Each case is one real-world failure of a kind; its file is loaded as it was recorded and the
test is named after the file's stem. Everything is real: the API over HTTP, the engine's queue,
the aiosmtpd relay, and the loopback Twilio / Graph servers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.core.time import shifted_clock
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.retry.engine import run_due_now
from stealth_recovery.retry.runtime import reset_runtime
from tests.factories import make_account, make_attempt, make_policy
from tests.notifications.mime import ENCODED_WORD, assert_folded, display_name
from tests.payments.conftest import api_key_headers
from tests.support.smtp import SmtpSink

CASES = Path(__file__).parent / "cases" / "delivery"


def load_case(stem: str) -> dict[str, Any]:
    data = json.loads((CASES / f"{stem}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    """Provider clients are rebuilt for this test, so they reach its servers."""
    reset_runtime()
    yield
    reset_runtime()


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


def _email_log(db: Session, attempt_id: int) -> NotificationLog:
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
        row = _email_log(db, attempt_id)
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
    assert _email_log(db, attempt.id).status == "sent"
