"""ProviderNotifier across channels: one step on email, SMS and WhatsApp at once."""

from __future__ import annotations

import asyncio

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.sender import ProviderNotifier, TransientRetry
from stealth_recovery.notifications.smtp import SmtpEmailSender
from tests.support.builders import PAY_URL, message_context
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
        assert email.queue_id and email.queue_id == outcomes[0].provider_message_id
        assert sms.form["To"] == "+34612345678" and PAY_URL in sms.form["Body"]
        assert sms.message_id == outcomes[1].provider_message_id
        assert whatsapp.json["to"] == "34612345678"
        assert whatsapp.message_id == outcomes[2].provider_message_id

    async def test_an_unknown_channel_fails_without_raising(self, smtp_sink: SmtpSink) -> None:
        notifier = ProviderNotifier.from_settings(get_settings())

        outcome = await notifier.send(message_context(channel="pigeon"))

        assert outcome.status == "failed"
        assert outcome.error_message == "unknown channel 'pigeon'"


class TestCircuitBreaker:
    async def test_a_provider_that_is_down_is_left_alone_then_resumed_by_one_probe(
        self, smtp_sink: SmtpSink
    ) -> None:
        # Given an SMTP server that hangs up on everyone, and a breaker with a short cooldown
        notifier = ProviderNotifier(
            senders={"email": SmtpEmailSender.from_settings(get_settings())},
            retry=TransientRetry(tries=1, backoff_seconds=0),
            breaker_failures=3,
            breaker_cooldown_seconds=0.2,
        )
        smtp_sink.down = True
        failing = [await notifier.send(message_context(log_id=i)) for i in range(3)]
        # When more messages come while the breaker is open, no call reaches the server
        calls = smtp_sink.connections
        paused = await notifier.send(message_context(log_id=4))
        assert smtp_sink.connections == calls
        # And once the server is back and the cooldown has passed, ten messages arrive together
        smtp_sink.down = False
        await asyncio.sleep(0.3)
        resumed = await asyncio.gather(
            *(notifier.send(message_context(log_id=10 + i)) for i in range(10))
        )
        await notifier.aclose()
        # Then the outage was transient for the first ones, and the probe let all ten through
        assert [o.status for o in failing] == ["transient"] * 3
        assert paused.status == "transient" and "circuit breaker" in (paused.error_message or "")
        assert [o.status for o in resumed] == ["sent"] * 10
        assert len(smtp_sink.messages) == 10
