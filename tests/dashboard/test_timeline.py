"""An attempt's timeline: opening, each message's status changes, the end, what comes next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stealth_recovery.core.time import utc_now
from stealth_recovery.dashboard.timeline import build_timeline, message_changes
from stealth_recovery.notifications.models import NotificationLog
from stealth_recovery.recovery.models import RecoveryAttempt

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _attempt(**fields: object) -> RecoveryAttempt:
    values: dict[str, object] = {
        "id": 1,
        "organization_id": 1,
        "status": "sent",
        "created_at": T0,
        "expires_at": T0 + timedelta(days=7),
        "retry_count": 1,
        "max_retries": 3,
        "next_retry_at": None,
    }
    values.update(fields)
    return RecoveryAttempt(**values)


def _log(**fields: object) -> NotificationLog:
    values: dict[str, object] = {
        "retry_number": 0,
        "channel": "email",
        "recipient": "ada@example.com",
        "provider": "smtp",
        "status": "pending",
        "created_at": T0 + timedelta(hours=1),
        "updated_at": T0 + timedelta(hours=1),
    }
    values.update(fields)
    return NotificationLog(**values)


class TestMessageChanges:
    def test_a_delivered_email_went_through_three_statuses(self) -> None:
        log = _log(
            status="delivered",
            sent_at=T0 + timedelta(hours=1, seconds=2),
            delivered_at=T0 + timedelta(hours=1, minutes=5),
            provider_message_id="<abc@example.com>",
        )
        changes = message_changes(log)
        assert [c.status for c in changes] == ["pending", "sent", "delivered"]
        assert changes[1].note == "accepted by SMTP · id <abc@example.com>"

    def test_a_bounce_keeps_the_providers_reason(self) -> None:
        log = _log(
            status="bounced",
            sent_at=T0 + timedelta(hours=1, seconds=2),
            failed_at=T0 + timedelta(hours=2),
            error_message="550 5.1.1 unknown user",
        )
        changes = message_changes(log)
        assert [c.status for c in changes] == ["pending", "sent", "bounced"]
        assert changes[-1].note == "550 5.1.1 unknown user"


class TestBuildTimeline:
    def test_a_paid_attempt_ends_with_the_payment_and_its_reminder_number(self) -> None:
        attempt = _attempt(
            status="completed",
            completed_at=T0 + timedelta(hours=3),
            completed_after_step=1,
            opened_at=T0 + timedelta(hours=2),
        )
        events = build_timeline(
            attempt, None, [_log(status="sent", sent_at=T0 + timedelta(hours=1))]
        )
        assert [e.kind for e in events] == ["opened", "message", "link_opened", "completed"]
        assert events[-1].detail == "Recovered after 1 reminder(s)"

    def test_an_open_attempt_ends_with_its_next_reminder(self) -> None:
        due = utc_now() + timedelta(hours=2)
        events = build_timeline(_attempt(next_retry_at=due), None, [])
        assert events[-1].kind == "next"
        assert events[-1].title == "Reminder 2 of 3 scheduled"

    def test_a_reminder_due_now_is_queued(self) -> None:
        events = build_timeline(_attempt(next_retry_at=utc_now()), None, [])
        assert (events[-1].title, events[-1].detail) == (
            "Reminder 2 of 3 queued to go out now",
            "due now",
        )

    def test_after_the_last_reminder_the_next_event_is_the_close(self) -> None:
        attempt = _attempt(retry_count=3, next_retry_at=utc_now() + timedelta(hours=5))
        events = build_timeline(attempt, None, [])
        assert events[-1].title == "Closes as unpaid if the customer has not paid by then"

    def test_a_cancelled_attempt_says_why(self) -> None:
        attempt = _attempt(
            status="cancelled",
            cancelled_at=T0 + timedelta(days=2),
            cancel_reason="retries exhausted",
        )
        events = build_timeline(attempt, None, [])
        assert (events[-1].kind, events[-1].detail) == ("cancelled", "retries exhausted")


class TestStepInAWorkersHands:
    def test_a_claimed_step_is_handed_to_the_worker_since_its_claim(self) -> None:
        # Given a step claimed for the queue 30 s ago under a 300 s lease
        claimed_at = utc_now() - timedelta(seconds=30)
        attempt = _attempt(
            next_retry_at=claimed_at + timedelta(seconds=300), lease_owner="q:0123456789abcdef"
        )
        # When the timeline is built
        events = build_timeline(attempt, None, [], lease=timedelta(seconds=300))
        # Then it ends with the hand-over at the claim time, not a scheduled reminder
        last = events[-1]
        assert (last.kind, last.title, last.at) == (
            "handed_over",
            "Reminder 2 of 3 handed to the worker",
            claimed_at,
        )
        assert last.detail == "queued; it shows as sent once the worker records it"

    def test_a_step_a_worker_took_over_is_being_sent(self) -> None:
        attempt = _attempt(
            next_retry_at=utc_now() + timedelta(seconds=200), lease_owner="w:host:42:abcd1234"
        )
        events = build_timeline(attempt, None, [], lease=timedelta(seconds=300))
        assert (events[-1].kind, events[-1].title) == ("handed_over", "Reminder 2 of 3 being sent")

    def test_a_lapsed_lease_is_due_again(self) -> None:
        # Given a claim whose worker never recorded it, its lease over
        attempt = _attempt(next_retry_at=utc_now(), lease_owner="q:0123456789abcdef")
        events = build_timeline(attempt, None, [], lease=timedelta(seconds=300))
        assert (events[-1].kind, events[-1].title) == (
            "next",
            "Reminder 2 of 3 queued to go out now",
        )
