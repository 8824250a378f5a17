"""SMS through Twilio's Messages API, against the loopback Twilio server."""

from __future__ import annotations

import asyncio

import pytest

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.rendering import render_sms
from stealth_recovery.notifications.sender import ProviderNotifier, TransientRetry
from tests.support.builders import PAY_URL, message_context
from tests.support.providers import FakeProviders

SMS = {"channel": "sms", "recipient": "+34612345678"}


def _notifier() -> ProviderNotifier:
    return ProviderNotifier.from_settings(
        get_settings(), retry=TransientRetry(tries=3, backoff_seconds=0.0)
    )


class TestSend:
    async def test_posts_the_documented_form_with_basic_auth(
        self, fake_providers: FakeProviders
    ) -> None:
        # Given Twilio settings pointing at the loopback server
        notifier = _notifier()
        message = message_context(**SMS)

        # When an SMS reminder is sent
        outcome = await notifier.send(message)
        await notifier.aclose()

        # Then Twilio received one authenticated form with our number, text and callback
        [request] = fake_providers.requests_to("twilio")
        assert request.path == (
            f"/2010-04-01/Accounts/{fake_providers.twilio_account_sid}/Messages.json"
        )
        assert request.headers["authorization"].startswith("Basic ")
        assert request.form == {
            "To": "+34612345678",
            "From": fake_providers.twilio_from_number,
            "Body": render_sms(message),
            "StatusCallback": f"{get_settings().base_url}/v1/webhooks/twilio/status",
        }
        assert PAY_URL in request.form["Body"]
        # And the message SID is the provider id
        assert outcome.status == "sent" and outcome.provider == "twilio"
        assert outcome.provider_message_id == request.message_id
        assert outcome.provider_message_id.startswith("SM")

    async def test_429_then_success_sends_one_message(self, fake_providers: FakeProviders) -> None:
        # Given Twilio rate-limits the first request
        fake_providers.script(
            "twilio", 429, code=20429, message="Too Many Requests", headers={"Retry-After": "0"}
        )
        notifier = _notifier()

        # When the SMS is sent
        outcome = await notifier.send(message_context(**SMS))
        await notifier.aclose()

        # Then the retry went through and exactly one message was accepted
        assert outcome.status == "sent"
        assert [r.status for r in fake_providers.requests_to("twilio")] == [429, 201]
        assert len(fake_providers.accepted("twilio")) == 1

    async def test_5xx_every_time_is_transient_after_the_tries(
        self, fake_providers: FakeProviders
    ) -> None:
        for _ in range(3):
            fake_providers.script("twilio", 503, code=20503, message="Service Unavailable")
        notifier = _notifier()

        outcome = await notifier.send(message_context(**SMS))
        await notifier.aclose()

        assert outcome.status == "transient"
        assert outcome.error_message == ("Twilio 503 (error 20503): Service Unavailable (3 tries)")
        assert fake_providers.accepted("twilio") == []

    async def test_a_long_retry_after_defers_at_once(self, fake_providers: FakeProviders) -> None:
        fake_providers.script(
            "twilio", 429, code=20429, message="Too Many Requests", headers={"Retry-After": "120"}
        )
        notifier = _notifier()

        outcome = await notifier.send(message_context(**SMS))
        await notifier.aclose()

        assert outcome.status == "transient"
        assert outcome.error_message == (
            "Twilio 429 (error 20429): Too Many Requests (asked to wait 120s)"
        )
        assert len(fake_providers.requests_to("twilio")) == 1

    async def test_an_invalid_number_bounces_at_once_with_the_provider_message(
        self, fake_providers: FakeProviders
    ) -> None:
        # Given a number Twilio refuses
        notifier = _notifier()

        # When the SMS is sent to it
        outcome = await notifier.send(message_context(channel="sms", recipient="12345"))
        await notifier.aclose()

        # Then it bounced (21211) with Twilio's error, without a retry
        assert outcome.status == "bounced"
        assert outcome.error_message == (
            "Twilio 400 (error 21211): The 'To' number 12345 is not a valid phone number."
        )
        assert len(fake_providers.requests_to("twilio")) == 1

    async def test_wrong_credentials_fail(
        self, fake_providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "not-the-token")
        get_settings.cache_clear()
        notifier = _notifier()

        outcome = await notifier.send(message_context(**SMS))
        await notifier.aclose()

        assert outcome.status == "failed"
        assert outcome.error_message == "Twilio 401 (error 20003): Authenticate"

    async def test_no_answer_after_the_request_is_unconfirmed_and_not_retried(
        self, fake_providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a Twilio that answers after our timeout (it may have queued the SMS)
        fake_providers.latency = 1.0
        monkeypatch.setenv("PROVIDER_HTTP_TIMEOUT_SECONDS", "0.3")
        get_settings.cache_clear()
        notifier = _notifier()

        # When an SMS reminder is sent
        outcome = await notifier.send(message_context(**SMS))
        await notifier.aclose()

        # Then it is unconfirmed, and the request was made once, never repeated
        assert (outcome.status, outcome.handed_over) == ("unconfirmed", True)
        assert outcome.error_message is not None
        assert "after the request was sent" in outcome.error_message
        for _ in range(50):  # the server records the request once its late answer is done
            if fake_providers.requests_to("twilio"):
                break
            await asyncio.sleep(0.1)
        assert len(fake_providers.requests_to("twilio")) == 1

    async def test_an_unreachable_api_is_transient(
        self, fake_providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake_providers.stop()  # nothing listens on its port any more
        notifier = _notifier()

        outcome = await notifier.send(message_context(**SMS))
        await notifier.aclose()

        assert (outcome.status, outcome.handed_over) == ("transient", True)
        assert outcome.error_message is not None
        assert outcome.error_message.startswith("connection error calling 127.0.0.1: ConnectError")
        assert outcome.error_message.endswith("(3 tries)")


class TestNotConfigured:
    def test_names_the_missing_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Given no Twilio credentials
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"):
            monkeypatch.delenv(name, raising=False)
        get_settings.cache_clear()

        # When the notifier is built
        notifier = ProviderNotifier.from_settings(get_settings())

        # Then SMS says why it cannot send, and email is unaffected
        assert notifier.unavailable_reason("sms") == (
            "not configured: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER"
        )
        assert notifier.unavailable_reason("email") is None
        assert notifier.provider_for("sms") == "twilio"

    async def test_send_on_an_unconfigured_channel_is_a_failed_outcome(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")
        monkeypatch.setenv("TWILIO_FROM_NUMBER", "+15005550006")
        get_settings.cache_clear()
        notifier = ProviderNotifier.from_settings(get_settings())

        outcome = await notifier.send(message_context(**SMS))

        assert outcome.status == "failed"
        assert outcome.error_message == "not configured: set TWILIO_ACCOUNT_SID"
