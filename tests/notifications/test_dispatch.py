"""ProviderNotifier across channels: one step on email, SMS and WhatsApp at once."""

from __future__ import annotations

import asyncio

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.dispatch import ProviderNotifier
from tests.notifications.conftest import PAY_URL, message_context
from tests.support.providers import FakeProviders
from tests.support.smtp import SmtpSink


class TestOneStepOnThreeChannels:
    async def test_each_provider_receives_its_message(
        self, smtp_sink: SmtpSink, fake_providers: FakeProviders
    ) -> None:
        # Given every provider configured and a step on email, SMS and WhatsApp
        notifier = ProviderNotifier.from_settings(get_settings())
        step = [
            message_context(log_id=1, channel="email", recipient="ana@example.test"),
            message_context(log_id=2, channel="sms", recipient="+34612345678"),
            message_context(log_id=3, channel="whatsapp", recipient="+34612345678"),
        ]

        # When the three messages are sent concurrently
        outcomes = await asyncio.gather(*(notifier.send(m) for m in step))
        await notifier.aclose()

        # Then each went out through its own provider, with its own id
        assert [(o.status, o.provider) for o in outcomes] == [
            ("sent", "smtp"),
            ("sent", "twilio"),
            ("sent", "whatsapp"),
        ]
        [email] = smtp_sink.messages
        [sms] = fake_providers.accepted("twilio")
        [whatsapp] = fake_providers.accepted("whatsapp")
        assert email.rcpt_tos == ["ana@example.test"]
        assert email.message["Message-ID"] == outcomes[0].provider_message_id
        assert sms.form["To"] == "+34612345678" and PAY_URL in sms.form["Body"]
        assert sms.message_id == outcomes[1].provider_message_id
        assert whatsapp.json["to"] == "34612345678"
        assert whatsapp.message_id == outcomes[2].provider_message_id

    async def test_an_unknown_channel_fails_without_raising(self, smtp_sink: SmtpSink) -> None:
        notifier = ProviderNotifier.from_settings(get_settings())

        outcome = await notifier.send(message_context(channel="pigeon"))

        assert outcome.status == "failed"
        assert outcome.error_message == "unknown channel 'pigeon'"
