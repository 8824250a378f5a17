"""The whole path over HTTP: a failure is reported, a reminder is mailed, the customer pays.

The app over HTTP (TestClient), the SMTP sink, and the engine's `run_due_now` with the clock
moved forward. TestClient returns only after the request's unit of work has committed; against a
live server the session dependency commits after the response is sent, so a client's next request
could race it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt
from stealth_recovery.retry.runtime import run_due_now
from tests.support.builders import api_key_headers, make_account, make_policy
from tests.support.smtp import SmtpSink, smtp_sink  # noqa: F401

REPORT = {
    "transaction_ref": "inv_9001",
    "amount_minor": 2500,
    "currency": "EUR",
    "customer_email": "jane@example.com",
    "customer_name": "Jane",
    "customer_locale": "en_IE",
    "customer_timezone": "Europe/Dublin",
    "decline_code": "insufficient_funds",
    "gateway": "stripe",
    "occurred_at": "2026-11-01T12:00:00Z",
}


def _messages_logged(db: Session, attempt_id: int) -> int:
    stmt = select(func.count()).where(NotificationLog.attempt_id == attempt_id)
    return int(db.scalar(stmt) or 0)


class TestFullRecoveryPath:
    def test_report_remind_open_pay_and_nothing_more(
        self,
        client: TestClient,
        db: Session,
        smtp_sink: SmtpSink,  # noqa: F811
    ) -> None:
        # Given a merchant whose policy reminds after 60 min, then 120 min, by email
        admin = make_account(db)
        make_policy(db, admin.organization, max_retries=3, initial_delay_minutes=60)
        key = api_key_headers(db, admin.organization)
        # When the merchant's server reports a failed payment
        reported = client.post("/v1/events/payment_failed", json=REPORT, headers=key)
        assert reported.status_code == 201, reported.text
        attempt_id = reported.json()["id"]

        # Then nothing is sent before the first reminder is due
        assert run_due_now() == 0
        assert smtp_sink.messages == []

        # When an hour has passed, the first reminder goes to the customer
        with shifted_clock(timedelta(minutes=61)):
            assert run_due_now() == 1
        [reminder] = smtp_sink.wait_for(1)
        assert reminder.rcpt_tos == ["jane@example.com"]
        link = re.search(r"https?://\S+/pay/[A-Za-z0-9_-]+", reminder.body("plain"))
        assert link is not None
        pay_path = urlsplit(link.group(0)).path
        assert pay_path == urlsplit(reported.json()["pay_url"]).path

        # When the customer opens the link from the email
        with shifted_clock(timedelta(minutes=90)):
            page = client.get(pay_path)
        assert page.status_code == 200
        assert "€25.00" in page.text
        attempt = client.get(f"/v1/attempts/{attempt_id}", headers=admin.headers).json()
        assert attempt["status"] == AttemptStatus.opened
        assert attempt["retry_count"] == 1

        # And much later, when the second reminder is already due, the payment arrives
        with shifted_clock(timedelta(hours=5)):
            db.expire_all()
            due = db.get(RecoveryAttempt, attempt_id)
            assert due is not None and due.next_retry_at is not None
            assert due.next_retry_at <= utc_now()
            completed = client.post(f"/v1/recoveries/{attempt_id}/complete", headers=key)
            assert completed.status_code == 200
            assert completed.json()["status"] == AttemptStatus.completed
            # Then the due reminder is never sent
            assert run_due_now() == 0
        with shifted_clock(timedelta(days=2)):
            assert run_due_now() == 0
        assert len(smtp_sink.messages) == 1
        assert _messages_logged(db, attempt_id) == 1

        # And the stats and the link tell the same story
        stats = client.get("/v1/retry/stats", headers=admin.headers).json()
        assert stats["completed_count"] == 1
        assert stats["sent_count"] == 1
        assert stats["pending_retries"] == 0
        assert client.get(pay_path).status_code == 410
        trail = client.get(
            f"/v1/retry/attempts/{attempt_id}/notifications", headers=admin.headers
        ).json()
        assert [(n["channel"], n["recipient"], n["status"]) for n in trail] == [
            ("email", "jane@example.com", "sent")
        ]
