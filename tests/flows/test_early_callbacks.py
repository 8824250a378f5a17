"""A delivery callback that reaches us before the send is recorded is held, then applied.

The loopback Twilio and Graph servers post a signed status callback for each new message to
the app (served by uvicorn) before they answer the send, so every callback finds no log row
with its message id yet. The engine then records the sends and the held statuses land.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.notifications.models import HeldDeliveryStatus, NotificationLog
from stealth_recovery.retry.runtime import run_due_now
from tests.support.builders import make_account, make_attempt, make_policy
from tests.support.providers import FakeProviders

# Per customer number: the Twilio callback, the WhatsApp status, and the final log statuses.
RACES: dict[str, tuple[dict[str, str], dict[str, Any], str, str]] = {
    "+34612345601": (
        {"MessageStatus": "delivered", "SmsStatus": "delivered"},
        {"status": "delivered"},
        "delivered",
        "delivered",
    ),
    "+34612345602": (
        {"MessageStatus": "undelivered", "SmsStatus": "undelivered", "ErrorCode": "30005"},
        {"status": "read"},
        "bounced",
        "delivered",
    ),
    "+34612345603": (
        {"MessageStatus": "failed", "SmsStatus": "failed", "ErrorCode": "30006"},
        {"status": "failed", "errors": [{"code": 131026, "title": "Message undeliverable"}]},
        "bounced",
        "bounced",
    ),
    "+34612345604": (
        {"MessageStatus": "failed", "SmsStatus": "failed", "ErrorCode": "30008"},
        {"status": "failed", "errors": [{"code": 131049, "title": "Not delivered"}]},
        "failed",
        "failed",
    ),
    "+34612345605": (
        {"MessageStatus": "sent", "SmsStatus": "sent"},
        {"status": "sent"},
        "sent",
        "sent",
    ),
}


def test_every_status_that_beats_the_record_is_applied(
    db: Session, fake_providers: FakeProviders, live_webhooks: str
) -> None:
    # Given customers whose messages get a status callback before the API answers the send
    account = make_account(db)
    make_policy(db, account.organization, enabled_channels=["sms", "whatsapp"])
    attempts = {}
    for phone, (twilio_status, whatsapp_status, _, _) in RACES.items():
        fake_providers.early_status("twilio", phone, **twilio_status)
        fake_providers.early_status("whatsapp", phone, **whatsapp_status)
        attempts[phone] = make_attempt(db, account.organization, email=None, phone=phone).id

    # When the queue sends their reminders
    assert run_due_now() == len(RACES)

    # Then every callback came before its message was recorded: final ones were held
    assert len(fake_providers.callbacks) == 2 * len(RACES)
    for _, _, http_status, answer in fake_providers.callbacks:
        assert http_status == 200
        assert answer["results"] in (["held"], ["ignored"])
    # And once recorded, each log ends as its callback said, never lower than sent
    db.expire_all()
    for phone, (twilio_status, _, sms_final, whatsapp_final) in RACES.items():
        rows = {
            row.channel: row
            for row in db.scalars(
                select(NotificationLog).where(NotificationLog.attempt_id == attempts[phone])
            )
        }
        assert (rows["sms"].status, rows["whatsapp"].status) == (sms_final, whatsapp_final)
        if "ErrorCode" in twilio_status:
            assert rows["sms"].error_message is not None
            assert twilio_status["ErrorCode"] in rows["sms"].error_message
        if sms_final == "delivered":
            assert rows["sms"].delivered_at is not None
    # And nothing stays held
    assert db.scalar(select(func.count()).select_from(HeldDeliveryStatus)) == 0
