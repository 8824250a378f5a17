"""One table per provider: a code means the same whether it comes at send time or by callback."""

from __future__ import annotations

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications import delivery_status as service
from stealth_recovery.notifications.error_codes import (
    TWILIO_ERRORS,
    WHATSAPP_ERRORS,
    Refusal,
    twilio_error,
    whatsapp_error,
)
from stealth_recovery.notifications.sender import ProviderNotifier, TransientRetry
from tests.support.builders import message_context
from tests.support.providers import FakeProviders

# What the log ends as when the code refuses a send (a transient code is retried, and the
# loopback server takes the retry), and when it arrives in a failed-delivery callback.
AT_SEND = {Refusal.bounced: "bounced", Refusal.failed: "failed", Refusal.transient: "sent"}
BY_CALLBACK = {Refusal.bounced: "bounced", Refusal.failed: "failed", Refusal.transient: "failed"}


def _notifier() -> ProviderNotifier:
    return ProviderNotifier.from_settings(
        get_settings(), retry=TransientRetry(tries=2, backoff_seconds=0.0)
    )


async def test_every_twilio_code_means_the_same_at_send_time_and_by_callback(
    fake_providers: FakeProviders,
) -> None:
    notifier = _notifier()
    seen: dict[int, tuple[str, str | None]] = {}
    for code, entry in TWILIO_ERRORS.items():
        # Given Twilio refuses the create call with the code (HTTP 400, its error format)
        fake_providers.script("twilio", 400, code=code, message=entry.meaning)
        # When an SMS is sent, and when a status callback reports the same code
        outcome = await notifier.send(message_context(channel="sms", recipient="+34612345678"))
        event = service.twilio_event(
            {"MessageSid": "SM" + "a" * 32, "MessageStatus": "undelivered", "ErrorCode": str(code)}
        )
        assert event is not None and event.status is not None
        seen[code] = (outcome.status, event.status.value)
    await notifier.aclose()

    # Then both follow the table
    assert seen == {
        code: (AT_SEND[entry.refusal], BY_CALLBACK[entry.refusal])
        for code, entry in TWILIO_ERRORS.items()
    }


async def test_every_whatsapp_code_means_the_same_at_send_time_and_by_callback(
    fake_providers: FakeProviders,
) -> None:
    notifier = _notifier()
    seen: dict[int, tuple[str, str | None]] = {}
    for code, entry in WHATSAPP_ERRORS.items():
        fake_providers.script("whatsapp", 400, code=code, message=f"(#{code}) {entry.meaning}")
        outcome = await notifier.send(message_context(channel="whatsapp", recipient="+34612345678"))
        [event] = service.whatsapp_events(
            {
                "entry": [
                    {
                        "changes": [
                            {
                                "value": {
                                    "statuses": [
                                        {
                                            "id": "wamid.x",
                                            "status": "failed",
                                            "errors": [{"code": code, "title": entry.meaning}],
                                        }
                                    ]
                                }
                            }
                        ]
                    }
                ]
            }
        )
        assert event.status is not None
        seen[code] = (outcome.status, event.status.value)
    await notifier.aclose()

    assert seen == {
        code: (AT_SEND[entry.refusal], BY_CALLBACK[entry.refusal])
        for code, entry in WHATSAPP_ERRORS.items()
    }


def test_codes_arrive_as_numbers_or_digits_and_anything_else_is_unknown() -> None:
    assert twilio_error("21610") == twilio_error(21610) == TWILIO_ERRORS[21610]
    assert whatsapp_error("131026") == WHATSAPP_ERRORS[131026]
    for unknown in (None, "", "abc", True, 99999, 1.5):
        assert twilio_error(unknown) is None
        assert whatsapp_error(unknown) is None


def test_the_issue_s_bounce_codes_are_bounces() -> None:
    for code in (21211, 21610, 21614, 30005, 30006):
        assert TWILIO_ERRORS[code].refusal == Refusal.bounced
    assert WHATSAPP_ERRORS[131026].refusal == Refusal.bounced
