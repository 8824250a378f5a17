"""WhatsApp template messages through the Cloud API, against the loopback Graph server."""

from __future__ import annotations

import pytest

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.sender import ProviderNotifier, TransientRetry
from tests.support.builders import PAY_URL, message_context
from tests.support.providers import FakeProviders

WHATSAPP = {"channel": "whatsapp", "recipient": "+34612345678"}


def _notifier() -> ProviderNotifier:
    return ProviderNotifier.from_settings(
        get_settings(), retry=TransientRetry(tries=3, backoff_seconds=0.0)
    )


class TestSend:
    async def test_posts_a_template_message_with_bearer_auth(
        self, fake_providers: FakeProviders
    ) -> None:
        # Given WhatsApp settings pointing at the loopback Graph API
        notifier = _notifier()

        # When a reminder goes to a Spanish-speaking customer
        outcome = await notifier.send(message_context(locale="es-ES", **WHATSAPP))
        await notifier.aclose()

        # Then the Cloud API received the documented template message
        [request] = fake_providers.requests_to("whatsapp")
        assert request.path == f"/v21.0/{fake_providers.whatsapp_phone_number_id}/messages"
        assert request.headers["authorization"] == f"Bearer {fake_providers.whatsapp_token}"
        assert request.headers["content-type"] == "application/json"
        assert request.json == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "34612345678",
            "type": "template",
            "template": {
                "name": "payment_recovery",
                "language": {"code": "es"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "49,99 €"},
                            {"type": "text", "text": "Acme Outdoor"},
                            {"type": "text", "text": PAY_URL},
                        ],
                    }
                ],
            },
        }
        # And the wamid is the provider id
        assert outcome.status == "sent" and outcome.provider == "whatsapp"
        assert outcome.provider_message_id == request.message_id
        assert outcome.provider_message_id.startswith("wamid.")

    async def test_uses_the_configured_template_and_english_fallback(
        self, fake_providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WHATSAPP_TEMPLATE_NAME", "dunning_v2")
        get_settings.cache_clear()
        notifier = _notifier()

        await notifier.send(message_context(locale="fr-FR", **WHATSAPP))
        await notifier.aclose()

        [request] = fake_providers.requests_to("whatsapp")
        assert request.json["template"]["name"] == "dunning_v2"
        assert request.json["template"]["language"] == {"code": "en"}
        amount = request.json["template"]["components"][0]["parameters"][0]["text"]
        assert amount == "€49.99"

    async def test_language_codes_follow_the_approved_templates(
        self, fake_providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given templates approved as en_US and es_ES
        monkeypatch.setenv("WHATSAPP_TEMPLATE_LANGUAGES", '{"en": "en_US", "es": "es_ES"}')
        get_settings.cache_clear()
        notifier = _notifier()
        # When customers in both languages are reminded
        await notifier.send(message_context(locale="en-GB", **WHATSAPP))
        await notifier.send(message_context(locale="es-MX", **WHATSAPP))
        await notifier.aclose()
        # Then each message names the approved code
        codes = [
            r.json["template"]["language"]["code"] for r in fake_providers.requests_to("whatsapp")
        ]
        assert codes == ["en_US", "es_ES"]

    async def test_429_then_success_sends_one_message(self, fake_providers: FakeProviders) -> None:
        fake_providers.script(
            "whatsapp",
            429,
            code=130429,
            message="(#130429) Rate limit hit",
            headers={"Retry-After": "0"},
        )
        notifier = _notifier()

        outcome = await notifier.send(message_context(**WHATSAPP))
        await notifier.aclose()

        assert outcome.status == "sent"
        assert [r.status for r in fake_providers.requests_to("whatsapp")] == [429, 200]
        assert len(fake_providers.accepted("whatsapp")) == 1

    async def test_a_throttling_code_on_a_400_is_retried(
        self, fake_providers: FakeProviders
    ) -> None:
        # Graph reports some throttling as HTTP 400 with a rate-limit error code.
        fake_providers.script("whatsapp", 400, code=131056, message="(#131056) Pair rate limit")
        notifier = _notifier()

        outcome = await notifier.send(message_context(**WHATSAPP))
        await notifier.aclose()

        assert outcome.status == "sent"
        assert len(fake_providers.accepted("whatsapp")) == 1

    async def test_400_fails_at_once_with_the_provider_message(
        self, fake_providers: FakeProviders
    ) -> None:
        # Given a template the account does not have
        fake_providers.script(
            "whatsapp",
            400,
            code=132001,
            message="(#132001) Template name does not exist in the translation",
        )
        notifier = _notifier()

        # When a reminder is sent
        outcome = await notifier.send(message_context(**WHATSAPP))
        await notifier.aclose()

        # Then it failed with Graph's error, without a retry
        assert outcome.status == "failed"
        assert outcome.error_message == (
            "WhatsApp 400 (error 132001): (#132001) Template name does not exist in the translation"
        )
        assert len(fake_providers.requests_to("whatsapp")) == 1

    async def test_an_invalid_token_fails(
        self, fake_providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WHATSAPP_API_KEY", "expired")
        get_settings.cache_clear()
        notifier = _notifier()

        outcome = await notifier.send(message_context(**WHATSAPP))
        await notifier.aclose()

        assert outcome.status == "failed"
        assert outcome.error_message == (
            "WhatsApp 401 (error 190): Invalid OAuth access token - Cannot parse access token"
        )


class TestNotConfigured:
    def test_names_the_missing_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("WHATSAPP_API_KEY", "token")
        monkeypatch.delenv("WHATSAPP_BUSINESS_NUMBER", raising=False)
        get_settings.cache_clear()

        notifier = ProviderNotifier.from_settings(get_settings())

        assert notifier.unavailable_reason("whatsapp") == (
            "not configured: set WHATSAPP_BUSINESS_NUMBER"
        )
