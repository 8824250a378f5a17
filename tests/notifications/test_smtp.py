"""Email through ProviderNotifier and the SMTP pool, against the real loopback SMTP server."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client import REGISTRY

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.errors import HandOverRefused
from stealth_recovery.notifications.sender import ProviderNotifier, TransientRetry
from stealth_recovery.notifications.smtp import SmtpEmailSender, SmtpPool, queue_id
from tests.support.builders import PAY_URL, message_context
from tests.support.mime import ENCODED_WORD, assert_folded, display_name, strict
from tests.support.smtp import SmtpSink

FAST = TransientRetry(tries=3, backoff_seconds=0.0)


def _notifier(sink: SmtpSink, *, retry: TransientRetry = FAST, **pool: object) -> ProviderNotifier:
    options: dict[str, object] = {"host": sink.host, "port": sink.port, "size": 5, **pool}
    sender = SmtpEmailSender(pool=SmtpPool(**options), sender="reminders@shop.test")  # type: ignore[arg-type]
    return ProviderNotifier(senders={"email": sender}, retry=retry)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestEmailContent:
    async def test_multipart_text_and_html_with_the_reminder_details(
        self, smtp_sink: SmtpSink
    ) -> None:
        # Given a first reminder for €49.99 to Acme Outdoor, customer in New York
        notifier = _notifier(smtp_sink)

        # When it is sent
        outcome = await notifier.send(message_context())
        await notifier.aclose()

        # Then the server got one multipart message with everything the customer needs
        assert outcome.status == "sent" and outcome.provider == "smtp"
        [received] = smtp_sink.messages
        assert received.mail_from == "reminders@shop.test"
        assert received.rcpt_tos == ["ana@example.test"]
        assert received.message["From"] == "Acme Outdoor <reminders@shop.test>"
        assert received.queue_id and received.queue_id == outcome.provider_message_id
        assert ".sr101@shop.test>" in received.message["Message-ID"]
        assert received.subject == "Your payment of €49.99 to Acme Outdoor didn't go through"
        text, html = received.body("plain"), received.body("html")
        for body in (text, html):
            assert "€49.99" in body
            assert "Acme Outdoor" in body
            assert PAY_URL in body
            # 15:00 UTC on 5 December is 10:00 in New York
            assert "December 5, 2026, 10:00\u202fAM EST" in body
            assert "Reminder 1 of 3" in body
        assert text.startswith("Hi Ana,")
        assert f'href="{PAY_URL}"' in html

    async def test_spanish_customer_gets_spanish_formatting(self, smtp_sink: SmtpSink) -> None:
        notifier = _notifier(smtp_sink)
        outcome = await notifier.send(
            message_context(
                locale="es-ES",
                timezone="Europe/Madrid",
                decline_category="customer_action",
                retry_number=2,
            )
        )
        await notifier.aclose()

        assert outcome.status == "sent"
        [received] = smtp_sink.messages
        assert received.subject == (
            "Último aviso: actualiza tu tarjeta para tu pago de 49,99 € a Acme Outdoor"
        )
        text = received.body("plain")
        assert "5 de diciembre de 2026, 16:00 CET" in text
        assert "Recordatorio 3 de 3 (el último)" in text

    async def test_merchant_name_is_escaped_in_html(self, smtp_sink: SmtpSink) -> None:
        notifier = _notifier(smtp_sink)
        await notifier.send(message_context(merchant_name="<b>Bad</b> & Co"))
        await notifier.aclose()

        [received] = smtp_sink.messages
        assert "&lt;b&gt;Bad&lt;/b&gt; &amp; Co" in received.body("html")
        assert "<b>Bad</b>" not in received.body("html")
        assert "<b>Bad</b> & Co" in received.body("plain")

    async def test_non_ascii_merchant_and_subject_survive_the_headers(
        self, smtp_sink: SmtpSink
    ) -> None:
        notifier = _notifier(smtp_sink)
        await notifier.send(
            message_context(merchant_name="Café Olé Niño", locale="es", retry_number=2)
        )
        await notifier.aclose()

        [received] = smtp_sink.messages
        assert received.message["From"] == "Café Olé Niño <reminders@shop.test>"
        assert received.subject == (
            "Último aviso: tu pago de 49,99 € a Café Olé Niño no se ha completado"
        )


# Long names in several scripts: Latin with accents, Cyrillic, Greek, CJK, emoji, and ASCII.
LONG_NAMES = [
    "Müller & Söhne Feinkost und Weinhandel GmbH, Hamburg — Niederlassung Altona",
    "Общество с ограниченной ответственностью «Северный ветер» Санкт-Петербург",
    "Ελληνικά Προϊόντα Μεσογειακής Διατροφής και Οινοποιίας Αθηνών Α.Ε.",
    "株式会社ヤマダ電機オンラインストア東京本店・大阪支店・名古屋営業所",
    "🎉 Party Paradise 🎈 Balloons, Confetti & Everything Fun for Every Party 🥳",
    "The Extraordinarily Long Named Outdoor Equipment and Camping Supplies Company, Ltd.",
]


class TestHeaderFolding:
    @pytest.mark.parametrize("name", LONG_NAMES)
    async def test_long_merchant_names_fold_in_every_script(
        self, smtp_sink: SmtpSink, name: str
    ) -> None:
        # Given a merchant with a long name (in the From display name and in the subject)
        notifier = _notifier(smtp_sink)

        # When a reminder is sent in English and in Greek
        for locale in ("en", "el"):
            outcome = await notifier.send(message_context(merchant_name=name, locale=locale))
            assert outcome.status == "sent", outcome.error_message
        await notifier.aclose()

        # Then every header is folded within the limits and reads back exactly
        for received in smtp_sink.wait_for(2):
            assert_folded(received.raw)
            parsed = strict(received.raw)
            [sender] = parsed["From"].addresses
            assert sender.addr_spec == "reminders@shop.test"
            assert display_name(received.raw) == name
            assert name in str(parsed["Subject"])

    def test_header_helpers_hold_the_limits_for_any_length(self) -> None:
        # Given names from 1 to 200 characters in every script, ASCII without spaces included
        sender = SmtpEmailSender(pool=SmtpPool(host="127.0.0.1", port=25), sender="r@shop.test")
        for base in [*LONG_NAMES, "x" * 40]:
            for length in (1, 20, 60, 75, 76, 120, 200):
                name = (base * 5)[:length].strip() or "x"
                # When the message is composed
                raw, _ = sender.compose(message_context(merchant_name=name))
                strict(raw)
                # Then the name reads back unchanged, and lines fold where they can
                assert display_name(raw) == " ".join(name.split())
                header_section = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
                for word in ENCODED_WORD.findall(header_section):
                    assert len(word) <= 75
                for line in header_section.split("\r\n"):
                    # only an unbreakable ASCII word may pass 78 characters, on a line of its own
                    piece = line.strip() if line.startswith(" ") else line.partition(": ")[2]
                    assert len(line) <= 78 or " " not in piece, line

    def test_a_line_break_in_the_name_cannot_add_a_header(self) -> None:
        sender = SmtpEmailSender(pool=SmtpPool(host="127.0.0.1", port=25), sender="r@shop.test")
        raw, _ = sender.compose(message_context(merchant_name="Shop\r\nBcc: victim@example.test"))
        parsed = strict(raw)
        assert parsed["Bcc"] is None
        assert parsed["From"].addresses[0].display_name == "Shop Bcc: victim@example.test"
        assert parsed["From"].addresses[0].addr_spec == "r@shop.test"


class TestInternationalAddresses:
    async def test_idn_domain_goes_out_as_its_a_label_without_smtputf8(
        self, smtp_sink: SmtpSink
    ) -> None:
        # Given a relay without SMTPUTF8
        smtp_sink.smtputf8 = False
        notifier = _notifier(smtp_sink)

        # When a reminder goes to an address at an internationalised domain
        outcome = await notifier.send(message_context(recipient="kunde@müller-shop.example"))
        await notifier.aclose()

        # Then it is delivered to the A-label, in the envelope and the To header
        assert outcome.status == "sent", outcome.error_message
        [received] = smtp_sink.messages
        assert received.rcpt_tos == ["kunde@xn--mller-shop-9db.example"]
        assert received.smtputf8 is False
        assert str(received.message["To"]) == "kunde@xn--mller-shop-9db.example"
        assert_folded(received.raw)

    async def test_mixed_case_and_plus_tag_go_out_unchanged(self, smtp_sink: SmtpSink) -> None:
        smtp_sink.smtputf8 = False
        notifier = _notifier(smtp_sink)

        outcome = await notifier.send(message_context(recipient="Jane.Doe+billing@Example.COM"))
        await notifier.aclose()

        assert outcome.status == "sent"
        [received] = smtp_sink.messages
        assert received.rcpt_tos == ["Jane.Doe+billing@Example.COM"]

    async def test_a_quoted_local_part_goes_out_as_the_client_library_quotes_it(
        self, smtp_sink: SmtpSink
    ) -> None:
        # Given an address outside the plain dot-atom form (a quoted local part with a space)
        smtp_sink.smtputf8 = False
        notifier = _notifier(smtp_sink)

        # When it is sent
        outcome = await notifier.send(message_context(recipient='"jane doe"@example.test'))
        await notifier.aclose()

        # Then the envelope carries it as aiosmtplib's own parsing gives it
        assert outcome.status == "sent"
        [received] = smtp_sink.messages
        assert received.rcpt_tos == ['"jane doe"@example.test']

    async def test_command_text_in_an_address_never_reaches_the_command_line(
        self, smtp_sink: SmtpSink
    ) -> None:
        # Given a recipient trying to add an ESMTP parameter and a second mailbox to RCPT TO
        notifier = _notifier(smtp_sink)

        # When it is sent
        outcome = await notifier.send(
            message_context(recipient="ana@example.test> NOTIFY=NEVER <x@example.test")
        )
        await notifier.aclose()

        # Then the envelope holds the one mailbox the address parses to, nothing more
        assert outcome.status == "sent"
        [received] = smtp_sink.messages
        assert received.rcpt_tos == ["ana@example.test"]

    async def test_lines_starting_with_a_dot_arrive_whole(self, smtp_sink: SmtpSink) -> None:
        # Given a merchant whose name starts with a dot: the text part ends with a line ".Acme"
        notifier = _notifier(smtp_sink)

        # When the reminder is sent
        outcome = await notifier.send(message_context(merchant_name=".Acme"))
        await notifier.aclose()

        # Then the server un-stuffs the dot and the line reads as written
        assert outcome.status == "sent"
        [received] = smtp_sink.messages
        text = strict(received.raw).get_body(("plain",)).get_content()
        assert text.splitlines()[-1] == ".Acme"

    async def test_a_non_ascii_local_part_fails_saying_the_server_lacks_smtputf8(
        self, smtp_sink: SmtpSink
    ) -> None:
        smtp_sink.smtputf8 = False
        notifier = _notifier(smtp_sink)

        outcome = await notifier.send(message_context(recipient="jörg@example.de"))
        await notifier.aclose()

        assert outcome.status == "failed"
        assert outcome.error_message == (
            "the address jörg@example.de has a non-ASCII local part, which needs SMTPUTF8 "
            "(RFC 6531), and the SMTP server does not offer SMTPUTF8"
        )
        assert smtp_sink.messages == []

    async def test_a_non_ascii_local_part_is_sent_with_smtputf8_where_offered(
        self, smtp_sink: SmtpSink
    ) -> None:
        notifier = _notifier(smtp_sink)

        outcome = await notifier.send(message_context(recipient="jörg@bücher.example"))
        await notifier.aclose()

        assert outcome.status == "sent"
        [received] = smtp_sink.messages
        assert received.smtputf8 is True
        assert received.rcpt_tos == ["jörg@xn--bcher-kva.example"]

    async def test_a_domain_that_is_not_valid_idna_bounces(self, smtp_sink: SmtpSink) -> None:
        notifier = _notifier(smtp_sink)

        outcome = await notifier.send(message_context(recipient="ana@exa mple\u200d.example"))
        await notifier.aclose()

        assert outcome.status == "bounced"
        assert outcome.error_message is not None
        assert outcome.error_message.startswith("address not deliverable:")
        assert smtp_sink.messages == []


class TestConnectionReuse:
    async def test_sequential_messages_share_one_session(self, smtp_sink: SmtpSink) -> None:
        # Given a pool
        notifier = _notifier(smtp_sink)

        # When ten messages go one after the other
        for n in range(10):
            outcome = await notifier.send(message_context(recipient=f"c{n}@example.test"))
            assert outcome.status == "sent"
        await notifier.aclose()

        # Then the server saw a single connection
        assert len(smtp_sink.messages) == 10
        assert smtp_sink.connections == 1

    async def test_concurrent_sends_never_exceed_the_pool_size(self) -> None:
        # Given a server holding every message 50 ms and a pool of 5 sessions
        with SmtpSink(latency=0.05) as sink:
            notifier = _notifier(sink, size=5)

            # When 60 messages are sent at once
            outcomes = await asyncio.gather(
                *(notifier.send(message_context(recipient=f"c{n}@example.test")) for n in range(60))
            )
            await notifier.aclose()

            # Then all arrived over at most 5 connections
            assert {o.status for o in outcomes} == {"sent"}
            assert len(sink.messages) == 60
            assert sink.connections <= 5

    async def test_a_session_the_server_hung_up_is_replaced(self, smtp_sink: SmtpSink) -> None:
        # Given a pooled session the server has since closed
        notifier = _notifier(smtp_sink)
        assert (await notifier.send(message_context())).status == "sent"
        smtp_sink.disconnect_all()

        # When the next message goes out
        outcome = await notifier.send(message_context(recipient="ben@example.test"))
        await notifier.aclose()

        # Then it is sent on a fresh connection
        assert outcome.status == "sent"
        assert len(smtp_sink.messages_to("ben@example.test")) == 1
        assert smtp_sink.connections == 2

    async def test_a_pool_survives_a_new_event_loop(self, smtp_sink: SmtpSink) -> None:
        # Given a notifier used from one loop (the embedded scheduler runs a loop per tick)
        notifier = _notifier(smtp_sink)
        assert (await notifier.send(message_context())).status == "sent"

        # When it is used from another loop
        def in_another_loop() -> str:
            return asyncio.run(notifier.send(message_context(recipient="b@example.test"))).status

        status = await asyncio.to_thread(in_another_loop)

        # Then it opens sessions for that loop and sends
        assert status == "sent"
        assert len(smtp_sink.messages) == 2


class TestQueueId:
    """The 250 reply to the end of DATA names the id the mail server filed the message under."""

    @pytest.mark.parametrize(
        "reply",
        [
            "250 2.0.0 Ok: queued as {queue_id}",  # Postfix
            "250 OK id={queue_id}",  # Exim
            "250 2.0.0 {queue_id} Message accepted for delivery",  # Sendmail
            "250 2.0.0 OK  1733040000 {queue_id} - gsmtp",  # Gmail
            # Microsoft 365 / Exchange Online
            "250 2.6.0 <sr101@shop.test> [InternalId={queue_id}, Hostname=AM0PR01MB1234."
            "eurprd01.prod.exchangelabs.com] Queued mail for delivery",
            "250 Ok {queue_id}",  # Amazon SES
        ],
        ids=["postfix", "exim", "sendmail", "gmail", "microsoft", "ses"],
    )
    async def test_the_servers_queue_id_is_the_provider_message_id(
        self, smtp_sink: SmtpSink, reply: str
    ) -> None:
        # Given a mail server that names its queue id in its own words
        smtp_sink.accept_reply = reply
        notifier = _notifier(smtp_sink)

        # When a reminder is sent, twice on the same session
        first = await notifier.send(message_context())
        second = await notifier.send(message_context())
        await notifier.aclose()

        # Then each outcome carries the id that server gave that message, on one session
        assert [m.queue_id for m in smtp_sink.messages] == [
            first.provider_message_id,
            second.provider_message_id,
        ]
        assert first.provider_message_id != second.provider_message_id
        assert smtp_sink.connections == 1

    @pytest.mark.parametrize(
        ("reply", "kept"),
        [
            ("250 Message accepted for delivery", "Message accepted for delivery"),
            ("250 2.0.0   Ok,   thanks  ", "2.0.0 Ok, thanks"),
        ],
    )
    async def test_a_reply_without_a_recognisable_id_is_kept_trimmed(
        self, smtp_sink: SmtpSink, reply: str, kept: str
    ) -> None:
        # Given a server whose 250 names no id we know how to read
        smtp_sink.accept_reply = reply
        notifier = _notifier(smtp_sink)

        # When a reminder is sent
        outcome = await notifier.send(message_context())
        await notifier.aclose()

        # Then the log keeps the server's own words, whitespace trimmed
        assert outcome.status == "sent"
        assert outcome.provider_message_id == kept

    def test_an_id_longer_than_the_log_column_is_cut_to_fit(self) -> None:
        assert queue_id("2.0.0 Ok: queued as " + "A" * 300) == "A" * 255


class TestErrors:
    async def test_recipient_5xx_is_bounced_with_the_server_message(
        self, smtp_sink: SmtpSink
    ) -> None:
        # Given a mailbox the server refuses
        smtp_sink.reject("gone@example.test", 550, "5.1.1 <gone@example.test>: mailbox unavailable")
        notifier = _notifier(smtp_sink)

        # When a reminder is sent to it, then another to a good address
        outcome = await notifier.send(message_context(recipient="gone@example.test"))
        after = await notifier.send(message_context(recipient="ok@example.test"))
        await notifier.aclose()

        # Then it bounced with the server's words, and the session stayed usable
        assert outcome.status == "bounced"
        assert outcome.error_message == "SMTP 550 5.1.1 <gone@example.test>: mailbox unavailable"
        assert after.status == "sent"
        assert smtp_sink.connections == 1

    async def test_5xx_on_data_fails_the_message(self, smtp_sink: SmtpSink) -> None:
        smtp_sink.data_reply = "554 5.7.1 message rejected as spam"
        notifier = _notifier(smtp_sink)

        outcome = await notifier.send(message_context())
        await notifier.aclose()

        assert outcome.status == "failed"
        assert outcome.error_message == "SMTP 554 5.7.1 message rejected as spam"

    async def test_a_temporary_4xx_is_retried_and_sent_once(self, smtp_sink: SmtpSink) -> None:
        # Given a server that answers 451 to the first two tries
        smtp_sink.reject("ana@example.test", 451, "4.7.1 greylisted, try again", times=2)
        notifier = _notifier(smtp_sink)

        # When the reminder is sent with 3 tries
        outcome = await notifier.send(message_context())
        await notifier.aclose()

        # Then the third try delivered exactly one message
        assert outcome.status == "sent"
        assert len(smtp_sink.messages) == 1

    async def test_a_persistent_4xx_is_transient_after_the_tries(self, smtp_sink: SmtpSink) -> None:
        smtp_sink.reject("ana@example.test", 452, "4.2.2 mailbox full")
        notifier = _notifier(smtp_sink)

        outcome = await notifier.send(message_context())
        await notifier.aclose()

        # The engine makes the step due again later: a temporary refusal never fails it.
        assert (outcome.status, outcome.handed_over) == ("transient", False)
        assert outcome.error_message == "SMTP 452 4.2.2 mailbox full (3 tries)"
        assert smtp_sink.messages == []

    async def test_an_unreachable_server_fails_without_raising(self) -> None:
        # Given a port nobody listens on
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        pool = SmtpPool(host="127.0.0.1", port=port, timeout=2)
        notifier = ProviderNotifier(
            senders={"email": SmtpEmailSender(pool=pool, sender="r@shop.test")}, retry=FAST
        )

        # When a reminder is sent
        outcome = await notifier.send(message_context())

        # Then the outcome is transient (due again later) with a connection error
        assert (outcome.status, outcome.handed_over) == ("transient", False)
        assert outcome.error_message is not None
        assert "SMTP connection error" in outcome.error_message
        assert "(3 tries)" in outcome.error_message

    async def test_no_answer_after_the_end_of_data_is_unconfirmed_and_not_retried(self) -> None:
        # Given a server that answers the end of DATA after our timeout (it may queue the mail)
        with SmtpSink(hang_seconds=1.0) as sink:
            notifier = _notifier(
                sink, timeout=0.2, retry=TransientRetry(tries=3, backoff_seconds=0)
            )

            outcome = await notifier.send(message_context())

            # Then the outcome is unconfirmed, and no second copy was attempted
            assert (outcome.status, outcome.handed_over) == ("unconfirmed", True)
            assert outcome.error_message is not None
            assert "after the end of DATA" in outcome.error_message
            assert len(sink.wait_for(1, timeout=5)) == 1
            assert sink.connections == 1

    async def test_no_answer_to_the_envelope_is_transient_and_never_handed_over(self) -> None:
        # Given a server that greets and answers EHLO, then never answers MAIL
        commands: list[bytes] = []

        async def silent_after_ehlo(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            writer.write(b"220 mx.test ESMTP\r\n")
            while line := await reader.readline():
                commands.append(line.split(b" ", 1)[0].strip().upper())
                if commands[-1] == b"EHLO":
                    writer.write(b"250-mx.test\r\n250 SIZE 1000000\r\n")

        server = await asyncio.start_server(silent_after_ehlo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = SmtpPool(host="127.0.0.1", port=port, timeout=0.3)
        notifier = ProviderNotifier(
            senders={"email": SmtpEmailSender(pool=pool, sender="r@shop.test")},
            retry=TransientRetry(tries=2, backoff_seconds=0),
        )
        handed_over: list[bool] = []

        async def handover() -> None:
            handed_over.append(True)

        # When a reminder is sent
        try:
            outcome = await notifier.send(message_context(), handover)
        finally:
            server.close()

        # Then it is due again later, as a timeout, and nothing reached the hand-over
        assert (outcome.status, outcome.handed_over) == ("transient", False)
        assert outcome.error_message is not None
        assert outcome.error_message.startswith("SMTP timeout")
        assert handed_over == []
        # And each try opened a fresh session: one out of step with its replies is not reused
        assert commands.count(b"EHLO") == 2
        assert b"DATA" not in commands


class TestSecurityAndLogin:
    @pytest.mark.parametrize("security", ["starttls", "ssl"])
    async def test_logs_in_over_tls(self, security: str) -> None:
        # Given a TLS server that requires a login
        with SmtpSink(security=security, credentials=("shop", "s3cret")) as sink:  # type: ignore[arg-type]
            notifier = _notifier(
                sink,
                security=security,
                tls_context=sink.client_tls_context(),
                username="shop",
                password="s3cret",
            )

            # When a reminder is sent
            outcome = await notifier.send(message_context())
            await notifier.aclose()

            # Then it arrived
            assert outcome.status == "sent"
            assert len(sink.messages) == 1

    async def test_a_wrong_password_fails_the_message(self) -> None:
        with SmtpSink(security="starttls", credentials=("shop", "s3cret")) as sink:
            notifier = _notifier(
                sink,
                security="starttls",
                tls_context=sink.client_tls_context(),
                username="shop",
                password="wrong",
            )

            outcome = await notifier.send(message_context())

            assert outcome.status == "failed"
            assert outcome.error_message is not None
            assert outcome.error_message.startswith("SMTP 535")


class TestFromSettings:
    async def test_uses_the_smtp_settings(self, smtp_sink: SmtpSink) -> None:
        # Given SMTP_HOST/PORT pointing at the sink (fixture)
        notifier = ProviderNotifier.from_settings(get_settings())

        # When an email goes out
        outcome = await notifier.send(message_context())
        await notifier.aclose()

        # Then it reached the sink from SMTP_FROM
        assert outcome.status == "sent"
        assert smtp_sink.messages[0].mail_from == get_settings().smtp_from


class TestMetrics:
    async def test_counts_messages_and_observes_send_time(self, smtp_sink: SmtpSink) -> None:
        sent = _sample("stealth_recovery_messages_total", channel="email", status="sent")
        bounced = _sample("stealth_recovery_messages_total", channel="email", status="bounced")
        timed = _sample("stealth_recovery_send_seconds_count", channel="email")
        smtp_sink.reject("gone@example.test", 550, "5.1.1 unknown")
        notifier = _notifier(smtp_sink)

        await notifier.send(message_context())
        await notifier.send(message_context(recipient="gone@example.test"))
        await notifier.aclose()

        assert _sample("stealth_recovery_messages_total", channel="email", status="sent") == (
            sent + 1
        )
        assert _sample("stealth_recovery_messages_total", channel="email", status="bounced") == (
            bounced + 1
        )
        assert _sample("stealth_recovery_send_seconds_count", channel="email") == timed + 2


class TestHandOver:
    async def test_the_hand_over_runs_after_the_envelope_and_before_the_end_of_data(
        self, smtp_sink: SmtpSink
    ) -> None:
        # Given a hand-over hook that looks at the server when it is called
        seen: list[int] = []

        async def handover() -> None:
            seen.append(len(smtp_sink.messages))

        notifier = _notifier(smtp_sink)
        # When a reminder is sent
        outcome = await notifier.send(message_context(), handover)
        await notifier.aclose()
        # Then the hook ran once, before the server had the message, and the message went out
        assert seen == [0]
        assert (outcome.status, outcome.handed_over) == ("sent", True)
        assert len(smtp_sink.messages) == 1

    async def test_a_refused_hand_over_sends_nothing(self, smtp_sink: SmtpSink) -> None:
        async def refuse() -> None:
            raise HandOverRefused("not sent: the attempt ended")

        notifier = _notifier(smtp_sink)
        outcome = await notifier.send(message_context(), refuse)
        # The session is dropped without the final "."; the next message uses a fresh one
        second = await notifier.send(message_context(recipient="ben@example.test"))
        await notifier.aclose()
        assert (outcome.status, outcome.handed_over) == ("withheld", False)
        assert second.status == "sent"
        assert [m.rcpt_tos for m in smtp_sink.messages] == [["ben@example.test"]]

    async def test_a_refused_recipient_never_reaches_the_hand_over(
        self, smtp_sink: SmtpSink
    ) -> None:
        calls: list[str] = []

        async def handover() -> None:
            calls.append("called")

        smtp_sink.reject("ana@example.test", 550, "5.1.1 No such user")
        notifier = _notifier(smtp_sink)
        outcome = await notifier.send(message_context(), handover)
        await notifier.aclose()
        assert (outcome.status, outcome.handed_over) == ("bounced", False)
        assert calls == []
