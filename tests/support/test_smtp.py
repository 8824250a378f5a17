"""The loopback SMTP sink other tests rely on: it must behave like a real server."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib
import pytest

from stealth_recovery.core.settings import get_settings
from tests.support.smtp import SmtpSink, smtp_sink  # noqa: F401


def _message(to: str, subject: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "shop@example.test"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("plain body")
    message.add_alternative("<p>html body</p>", subtype="html")
    return message


async def _send(sink: SmtpSink, message: EmailMessage, **options: object) -> None:
    async with aiosmtplib.SMTP(hostname=sink.host, port=sink.port, **options) as client:  # type: ignore[arg-type]
        await client.send_message(message)


class TestFixture:
    def test_points_the_settings_at_the_sink(self, smtp_sink: SmtpSink) -> None:  # noqa: F811
        # Given the fixture / When settings are read / Then they name the sink
        settings = get_settings()
        assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", smtp_sink.port)
        assert smtp_sink.port > 0


class TestReceiving:
    async def test_keeps_envelope_and_parsed_parts(self, smtp_sink: SmtpSink) -> None:  # noqa: F811
        # When a multipart message is sent
        await _send(smtp_sink, _message("ana@example.test", "Your payment"))

        # Then the sink holds its envelope and both parts
        [received] = smtp_sink.messages
        assert received.mail_from == "shop@example.test"
        assert received.rcpt_tos == ["ana@example.test"]
        assert received.subject == "Your payment"
        assert received.body("plain").strip() == "plain body"
        assert received.body("html").strip() == "<p>html body</p>"
        assert smtp_sink.messages_to("ANA@example.test") == [received]

    async def test_holds_many_connections_at_once_under_latency(self) -> None:
        # Given a sink that holds each message 100 ms
        with SmtpSink(latency=0.1) as sink:
            # When 200 clients send at the same time
            await asyncio.gather(*(_send(sink, _message(f"c{i}@example.test")) for i in range(200)))

            # Then every message arrived, each on its own connection
            assert len(sink.messages) == 200
            assert sink.connections == 200


class TestRejecting:
    async def test_answers_a_chosen_recipient_with_the_given_code(
        self,
        smtp_sink: SmtpSink,  # noqa: F811
    ) -> None:
        # Given a recipient the server refuses
        smtp_sink.reject("gone@example.test", 550, "5.1.1 mailbox unavailable")

        # When mail is sent to it
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await _send(smtp_sink, _message("gone@example.test"))

        # Then the client sees that code and text, and nothing is stored
        [error] = refused.value.recipients
        assert (error.code, error.message) == (550, "5.1.1 mailbox unavailable")
        assert smtp_sink.messages == []

    async def test_a_limited_rejection_lets_the_next_try_through(
        self,
        smtp_sink: SmtpSink,  # noqa: F811
    ) -> None:
        # Given a recipient refused once with a temporary code
        smtp_sink.reject("busy@example.test", 451, "4.3.0 try again", times=1)

        # When sent twice
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await _send(smtp_sink, _message("busy@example.test"))
        await _send(smtp_sink, _message("busy@example.test"))

        # Then the second one arrived
        assert len(smtp_sink.messages_to("busy@example.test")) == 1

    async def test_answers_data_with_the_given_reply(self, smtp_sink: SmtpSink) -> None:  # noqa: F811
        smtp_sink.data_reply = "554 5.6.0 content rejected"
        with pytest.raises(aiosmtplib.SMTPDataError) as error:
            await _send(smtp_sink, _message("ana@example.test"))
        assert (error.value.code, error.value.message) == (554, "5.6.0 content rejected")


class TestSecurity:
    @pytest.mark.parametrize(
        ("security", "options"),
        [("starttls", {"start_tls": True}), ("ssl", {"use_tls": True})],
    )
    async def test_tls_and_login(self, security: str, options: dict[str, object]) -> None:
        # Given a TLS sink that requires a login
        with SmtpSink(security=security, credentials=("shop", "s3cret")) as sink:  # type: ignore[arg-type]
            tls = {"tls_context": sink.client_tls_context(), **options}

            # When a client logs in wrongly, then rightly
            with pytest.raises(aiosmtplib.SMTPAuthenticationError):
                await _send(sink, _message("a@example.test"), username="shop", password="x", **tls)
            await _send(sink, _message("a@example.test"), username="shop", password="s3cret", **tls)

            # Then only the authenticated message arrived
            assert len(sink.messages) == 1
