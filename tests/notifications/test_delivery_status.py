"""Delivery-status rules, called directly on real log rows."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from stealth_recovery.core.database import get_session_factory
from stealth_recovery.core.errors import Forbidden
from stealth_recovery.core.settings import Settings
from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.notifications import delivery_status as service
from stealth_recovery.notifications.delivery_status import CallbackResult, apply_delivery_status
from stealth_recovery.notifications.models import (
    HeldDeliveryStatus,
    NotificationLog,
    NotificationStatus,
)
from stealth_recovery.notifications.repository import MESSAGE_LOCK_NAMESPACE
from tests.support.builders import make_log
from tests.support.providers import meta_signature, twilio_signature, whatsapp_status_payload

SID = "SM" + "a" * 32
WAITING_FOR_MESSAGE_LOCK = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND classid::bigint = :ns"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


class TestApplyDeliveryStatus:
    def test_sent_becomes_delivered_with_the_time(self, db: Session) -> None:
        # Given a sent SMS
        log = make_log(db)
        at = utc_now()

        # When Twilio reports it delivered
        result = apply_delivery_status(
            db,
            provider="twilio",
            provider_message_id=SID,
            status=NotificationStatus.delivered,
            occurred_at=at,
        )
        db.commit()

        # Then the row is delivered at that time
        db.refresh(log)
        assert result == CallbackResult.updated
        assert log.status == "delivered"
        assert log.delivered_at == at
        assert log.failed_at is None

    def test_bounced_keeps_the_reason(self, db: Session) -> None:
        log = make_log(db)

        apply_delivery_status(
            db,
            provider="twilio",
            provider_message_id=SID,
            status=NotificationStatus.bounced,
            error_message="Twilio undelivered: error 30005 (unknown destination handset)",
        )
        db.commit()

        db.refresh(log)
        assert log.status == "bounced"
        assert log.failed_at is not None
        assert log.error_message == "Twilio undelivered: error 30005 (unknown destination handset)"

    def test_a_late_callback_never_moves_the_status_backwards(self, db: Session) -> None:
        # Given a delivered message
        log = make_log(db)
        first = utc_now()
        apply_delivery_status(
            db,
            provider="twilio",
            provider_message_id=SID,
            status=NotificationStatus.delivered,
            occurred_at=first,
        )
        db.commit()

        # When a late "failed" and a repeated "delivered" arrive
        late = apply_delivery_status(
            db,
            provider="twilio",
            provider_message_id=SID,
            status=NotificationStatus.failed,
            error_message="late",
        )
        repeat = apply_delivery_status(
            db,
            provider="twilio",
            provider_message_id=SID,
            status=NotificationStatus.delivered,
            occurred_at=first + timedelta(minutes=5),
        )
        db.commit()

        # Then nothing changed
        db.refresh(log)
        assert (late, repeat) == (CallbackResult.unchanged, CallbackResult.unchanged)
        assert log.status == "delivered"
        assert log.delivered_at == first
        assert log.failed_at is None and log.error_message is None

    def test_unknown_ids_and_other_providers_are_held(self, db: Session) -> None:
        log = make_log(db)

        unknown = apply_delivery_status(
            db,
            provider="twilio",
            provider_message_id="SM" + "f" * 32,
            status=NotificationStatus.delivered,
        )
        other_provider = apply_delivery_status(
            db, provider="whatsapp", provider_message_id=SID, status=NotificationStatus.delivered
        )
        db.commit()

        db.refresh(log)
        assert (unknown, other_provider) == (CallbackResult.held, CallbackResult.held)
        assert log.status == "sent"
        held = db.scalars(select(HeldDeliveryStatus).order_by(HeldDeliveryStatus.id)).all()
        assert [(h.provider, h.provider_message_id, h.status) for h in held] == [
            ("twilio", "SM" + "f" * 32, "delivered"),
            ("whatsapp", SID, "delivered"),
        ]

    def test_an_intermediate_status_is_ignored(self, db: Session) -> None:
        log = make_log(db)

        result = apply_delivery_status(db, provider="twilio", provider_message_id=SID, status=None)

        db.refresh(log)
        assert result == CallbackResult.ignored
        assert log.status == "sent"

    def test_refuses_to_record_a_non_final_status(self, db: Session) -> None:
        with pytest.raises(ValueError, match="can only report"):
            apply_delivery_status(
                db, provider="twilio", provider_message_id=SID, status=NotificationStatus.sent
            )


class TestHeldStatuses:
    def test_a_held_status_lands_when_the_send_is_recorded(self, db: Session) -> None:
        # Given a failed callback for a message id no row carries yet
        assert apply_delivery_status(
            db,
            provider="twilio",
            provider_message_id=SID,
            status=NotificationStatus.bounced,
            error_message="Twilio failed: error 30006 (landline or unreachable carrier)",
        ) == (CallbackResult.held)
        db.commit()
        # When the engine records the send with that id
        log = make_log(db, provider_message_id=SID)
        moved = service.apply_held_statuses(db, messages=[("twilio", SID)])
        db.commit()

        # Then the row moved to the held status and nothing stays held
        db.refresh(log)
        assert moved == 1
        assert (log.status, log.error_message) == (
            "bounced",
            "Twilio failed: error 30006 (landline or unreachable carrier)",
        )
        assert db.scalars(select(HeldDeliveryStatus)).all() == []

    def test_held_statuses_apply_in_arrival_order_forward_only(self, db: Session) -> None:
        for status in (NotificationStatus.delivered, NotificationStatus.failed):
            apply_delivery_status(db, provider="twilio", provider_message_id=SID, status=status)
        db.commit()
        log = make_log(db, provider_message_id=SID)

        assert service.apply_held_statuses(db, messages=[("twilio", SID)] * 2) == 1
        db.commit()

        db.refresh(log)
        assert log.status == "delivered"
        assert db.scalars(select(HeldDeliveryStatus)).all() == []

    def test_statuses_held_longer_than_a_day_are_dropped(self, db: Session) -> None:
        with shifted_clock(-service.HOLD_FOR - timedelta(minutes=1)):
            apply_delivery_status(
                db,
                provider="twilio",
                provider_message_id="SM-old",
                status=NotificationStatus.failed,
            )
        apply_delivery_status(
            db, provider="twilio", provider_message_id=SID, status=NotificationStatus.failed
        )
        db.commit()

        held = db.scalars(select(HeldDeliveryStatus.provider_message_id)).all()
        assert held == [SID]

    def test_a_callback_racing_the_record_waits_for_it_and_applies(
        self, db: Session, postgres_only: None
    ) -> None:
        # Given a record transaction that has written the message id and checked for held
        # statuses (finding none), not committed yet
        log = make_log(db, provider_message_id=None, status=NotificationStatus.pending)
        factory = get_session_factory()
        record = factory()
        record.execute(
            update(NotificationLog)
            .where(NotificationLog.id == log.id)
            .values(status="sent", provider_message_id=SID)
        )
        assert service.apply_held_statuses(record, messages=[("twilio", SID)]) == 0

        # When the failed callback for that id arrives meanwhile
        outcome: list[list[CallbackResult]] = []

        def callback() -> None:
            with factory() as session:
                event = service.StatusEvent("twilio", SID, NotificationStatus.failed)
                outcome.append(service.apply_events(session, events=[event]))
                session.commit()

        thread = threading.Thread(target=callback)
        thread.start()
        # it waits on the message's lock (seen in pg_locks) instead of holding the status
        with factory() as observer:
            waiting = 0
            for _ in range(500):
                waiting = observer.scalar(WAITING_FOR_MESSAGE_LOCK, {"ns": MESSAGE_LOCK_NAMESPACE})
                if waiting:
                    break
                observer.rollback()
                thread.join(0.01)
        assert waiting == 1 and not outcome
        record.commit()
        record.close()
        thread.join(10)

        # Then once the record commits, the callback finds the row and fails it
        assert outcome == [[CallbackResult.updated]]
        db.refresh(log)
        assert log.status == "failed"
        assert db.scalars(select(HeldDeliveryStatus)).all() == []


class TestTwilioEvent:
    @pytest.mark.parametrize(
        ("form", "status", "error"),
        [
            ({"MessageStatus": "delivered"}, "delivered", None),
            ({"MessageStatus": "read"}, "delivered", None),
            (
                {"MessageStatus": "undelivered", "ErrorCode": "30005"},
                "bounced",
                "Twilio undelivered: error 30005 (unknown destination handset)",
            ),
            (
                {"MessageStatus": "undelivered", "ErrorCode": "30003"},
                "failed",
                "Twilio undelivered: error 30003 (unreachable destination handset)",
            ),
            (
                {"MessageStatus": "failed", "ErrorCode": "21610"},
                "bounced",
                "Twilio failed: error 21610 (recipient unsubscribed (replied STOP))",
            ),
            ({"MessageStatus": "failed"}, "failed", "Twilio failed"),
            ({"MessageStatus": "sent"}, None, None),
            ({"MessageStatus": "queued"}, None, None),
        ],
    )
    def test_maps_twilio_statuses(
        self, form: dict[str, str], status: str | None, error: str | None
    ) -> None:
        event = service.twilio_event({"MessageSid": SID, **form})

        assert event is not None
        assert (event.status, event.error_message) == (status, error)
        assert event.provider_message_id == SID

    def test_without_a_sid_there_is_nothing_to_apply(self) -> None:
        assert service.twilio_event({"MessageStatus": "delivered"}) is None


class TestWhatsAppEvents:
    def test_reads_every_status_of_the_payload(self) -> None:
        payload = _whatsapp_payload(
            {"id": "wamid.A", "status": "sent", "timestamp": "1764600000"},
            {"id": "wamid.B", "status": "delivered", "timestamp": "1764600060"},
            {"id": "wamid.C", "status": "read", "timestamp": "1764600120"},
            {
                "id": "wamid.D",
                "status": "failed",
                "timestamp": "1764600180",
                "errors": [
                    {
                        "code": 131026,
                        "title": "Message undeliverable",
                        "error_data": {"details": "Receiver is incapable of receiving"},
                    }
                ],
            },
            {
                "id": "wamid.E",
                "status": "failed",
                "timestamp": "1764600240",
                "errors": [{"code": 131049, "title": "Not delivered to maintain engagement"}],
            },
        )

        events = service.whatsapp_events(payload)

        assert [(e.provider_message_id, e.status) for e in events] == [
            ("wamid.A", None),
            ("wamid.B", "delivered"),
            ("wamid.C", "delivered"),
            ("wamid.D", "bounced"),
            ("wamid.E", "failed"),
        ]
        assert events[1].occurred_at == datetime.fromtimestamp(1764600060, tz=UTC)
        assert events[3].error_message == (
            "WhatsApp error 131026: Message undeliverable (Receiver is incapable of receiving)"
        )
        assert events[4].error_message == (
            "WhatsApp error 131049: Not delivered to maintain engagement"
        )

    def test_ignores_payloads_without_statuses(self) -> None:
        inbound = {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {"messages": [{"id": "x"}]}}]}],
        }

        assert service.whatsapp_events(inbound) == []
        assert service.whatsapp_events({"entry": "nonsense"}) == []


class TestVerification:
    def test_twilio_signature(self) -> None:
        settings = Settings(twilio_auth_token="token")
        params = [("MessageSid", SID), ("MessageStatus", "delivered")]
        url = "https://recovery.example.test/v1/webhooks/twilio/status"
        good = twilio_signature(url, dict(params), "token")

        service.verify_twilio(settings=settings, url=url, params=params, signature=good)
        with pytest.raises(Forbidden):
            service.verify_twilio(
                settings=settings, url=url + "?x=1", params=params, signature=good
            )
        with pytest.raises(Forbidden):
            service.verify_twilio(settings=settings, url=url, params=params, signature=None)
        with pytest.raises(Forbidden, match="TWILIO_AUTH_TOKEN"):
            service.verify_twilio(
                settings=Settings(twilio_auth_token=None), url=url, params=params, signature=good
            )

    def test_meta_signature(self) -> None:
        settings = Settings(whatsapp_app_secret="secret")
        body = b'{"entry": []}'

        service.verify_whatsapp(
            settings=settings, body=body, signature=meta_signature(body, "secret")
        )
        with pytest.raises(Forbidden):
            service.verify_whatsapp(
                settings=settings, body=body + b" ", signature=meta_signature(body, "secret")
            )
        with pytest.raises(Forbidden):
            service.verify_whatsapp(
                settings=settings, body=body, signature=meta_signature(body, "other")
            )
        with pytest.raises(Forbidden, match="WHATSAPP_APP_SECRET"):
            service.verify_whatsapp(
                settings=Settings(whatsapp_app_secret=None),
                body=body,
                signature=meta_signature(body, "secret"),
            )

    def test_whatsapp_challenge(self) -> None:
        settings = Settings(whatsapp_verify_token="verify-me")

        assert (
            service.whatsapp_challenge(
                settings=settings,
                mode="subscribe",
                verify_token="verify-me",
                challenge="1158201444",
            )
            == "1158201444"
        )
        with pytest.raises(Forbidden):
            service.whatsapp_challenge(
                settings=settings, mode="subscribe", verify_token="wrong", challenge="1"
            )
        with pytest.raises(Forbidden):
            service.whatsapp_challenge(
                settings=Settings(whatsapp_verify_token=None),
                mode="subscribe",
                verify_token=None,
                challenge="1",
            )


def _whatsapp_payload(*statuses: dict[str, object]) -> dict[str, object]:
    return whatsapp_status_payload(
        *[{**status, "recipient_id": "34612345678"} for status in statuses],
        display_phone_number="15550783881",
    )
