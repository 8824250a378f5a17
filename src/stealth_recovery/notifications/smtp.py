"""Email over SMTP: a pool of reused aiosmtplib connections and the email sender.

Opening an SMTP session costs a TCP (and often TLS) handshake, EHLO and AUTH: several round
trips before the first message. The pool keeps up to `size` sessions open per event loop and
sends message after message on them, so at 100 ms provider latency one worker process keeps
`size` messages in flight with no handshake on the hot path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, make_msgid, quote
from functools import lru_cache

import aiosmtplib
import idna
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from stealth_recovery.core.settings import Settings, reveal
from stealth_recovery.core.slots import Slots
from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications.errors import (
    AmbiguousSendError,
    PermanentSendError,
    TransientSendError,
)
from stealth_recovery.notifications.rendering import render_email
from stealth_recovery.notifications.types import HandOver, MessageContext

# A server may drop a session it considers idle; past this age we open a fresh one instead.
MAX_IDLE_SECONDS = 30.0


@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    last_used: float = field(default_factory=time.monotonic)


class SmtpPool:
    """Up to `size` open SMTP sessions per event loop, reused message after message.

    A session whose connection broke (timeout, reset, server hung up) is closed and dropped; the
    next send opens a new one. A session the server merely refused a message on (4xx/5xx reply)
    has been reset by the client and goes back to the pool.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        size: int = 50,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        self.size = size
        self.tls_context = tls_context
        # Resolved once: aiosmtplib would call the blocking socket.getfqdn() per connection.
        self.local_hostname = local_hostname or socket.getfqdn()
        self.opened = 0  # sessions opened so far (shows reuse in tests and benchmarks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: Slots | None = None
        self._idle: list[_Connection] = []

    async def send(
        self,
        message: bytes,
        *,
        sender: str,
        recipients: list[str],
        handover: HandOver | None = None,
    ) -> str:
        """Send a raw message on a pooled session, calling `handover` just before the end of DATA.

        Returns the text of the server's 250 reply to the end of DATA (code stripped), e.g.
        "2.0.0 Ok: queued as 4BxY1234"; `queue_id()` extracts the server's id from it.
        aiosmtplib errors propagate to the caller, except a timeout or hang-up after the end of
        DATA was sent: the server may have queued the message, so that is `AmbiguousSendError`.
        Addresses must already be in their wire form (`envelope_address`): a non-ASCII one is
        sent with SMTPUTF8 (RFC 6531), and a server without it raises `SMTPNotSupported`.
        """
        # Internationalised addresses need SMTPUTF8 (RFC 6531); ASCII ones must not ask for it.
        utf8 = not all(a.isascii() for a in (sender, *recipients))
        slots = self._bind_loop()
        async with slots:
            connection, reused = await self._checkout()
            state = _Transaction()
            try:
                reply = await _transaction(
                    connection.client, message, sender, recipients, utf8, handover, state
                )
            except aiosmtplib.SMTPServerDisconnected:
                self._discard(connection)
                if not reused or state.data_started:
                    raise
                # Almost always a session the server closed while it sat idle in the pool, before
                # our message: resend once on a fresh session rather than fail the message.
                connection, _ = await self._checkout(fresh=True)
                state = _Transaction()
                try:
                    reply = await _transaction(
                        connection.client, message, sender, recipients, utf8, handover, state
                    )
                except BaseException as exc:
                    self._release_after(connection, exc)
                    raise
                self._checkin(connection)
            except BaseException as exc:
                self._release_after(connection, exc)
                raise
            else:
                self._checkin(connection)
            return reply

    async def aclose(self) -> None:
        """Say QUIT on every idle session of the current loop."""
        idle, self._idle = self._idle, []
        if self._loop is not asyncio.get_running_loop():
            return  # sessions of a finished loop cannot be spoken to any more
        await asyncio.gather(*(self._quit(c) for c in idle), return_exceptions=True)

    def _bind_loop(self) -> Slots:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            # Sessions belong to the loop that opened them (e.g. one asyncio.run per tick).
            for connection in self._idle:
                self._discard(connection)
            self._idle = []
            self._loop = loop
            self._slots = Slots(self.size)
        return self._slots

    async def _checkout(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if connection.client.is_connected and now - connection.last_used < MAX_IDLE_SECONDS:
                return connection, True
            self._discard(connection)
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=self.security == "ssl",
            start_tls=self.security == "starttls",
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
            username=self.username or None,
            password=self.password if self.username else None,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        self.opened += 1
        return _Connection(client), False

    def _checkin(self, connection: _Connection) -> None:
        connection.last_used = time.monotonic()
        self._idle.append(connection)

    def _release_after(self, connection: _Connection, exc: BaseException) -> None:
        # A refusal leaves a healthy, reset session, except 421 (the server is closing it).
        refused = isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code != 421
        if refused and connection.client.is_connected:
            self._checkin(connection)
        else:
            self._discard(connection)

    @staticmethod
    def _discard(connection: _Connection) -> None:
        # RuntimeError: its event loop is already closed, and the socket with it.
        with contextlib.suppress(RuntimeError):
            connection.client.close()

    @staticmethod
    async def _quit(connection: _Connection) -> None:
        try:
            await asyncio.wait_for(connection.client.quit(), timeout=5)
        finally:
            connection.client.close()


@dataclass
class _Transaction:
    data_started: bool = False  # DATA was accepted (354): the session cannot be reused blindly


# A mailbox that parses to itself (`email.utils.parseaddr`) and needs no quoting: dot-atoms of
# the common characters on both sides. Nearly every address is one; the others go through
# aiosmtplib's own parsing and checks, as `SMTP.mail()` and `SMTP.rcpt()` would do.
_PLAIN_MAILBOX = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
# What must never reach a command line: a control character could end it (command injection).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def mailbox(address: str, encoding: str) -> bytes:
    """`<address>` as the MAIL FROM / RCPT TO argument; ValueError when the address holds a
    control character (it could end the command line) or does not parse."""
    if _PLAIN_MAILBOX.fullmatch(address):
        return f"<{address}>".encode(encoding)
    if _CONTROL.search(address):
        raise ValueError(f"{address!r} holds a control character")
    return quote_address(address).encode(encoding)


async def _reply(client: aiosmtplib.SMTP, protocol: SMTPProtocol) -> SMTPResponse:
    """The server's reply to what was just written, as `SMTP.execute_command` reads it: a
    hang-up closes the session, and so does a 421. The caller bounds the wait."""
    try:
        response = await protocol.read_response(timeout=None)
    except aiosmtplib.SMTPServerDisconnected:
        client.close()
        raise
    if response.code == 421:
        client.close()
    return response


async def _envelope(
    client: aiosmtplib.SMTP,
    protocol: SMTPProtocol,
    sender: str,
    recipients: list[str],
    utf8: bool,
) -> None:
    """MAIL, RCPT and DATA, refusals raised as `SMTP.mail()`, `SMTP.rcpt()` and `SMTP.data()`
    raise them, without re-parsing the addresses of every message.

    Each command is written on the session's protocol and its reply read there, not through
    `SMTP.execute_command`: the pool holds the session for this one message, so its command
    lock and per-argument checks (done by `mailbox` here) are work without a purpose.
    """
    encoding = "utf-8" if utf8 else "ascii"
    protocol.write(
        b"MAIL FROM:" + mailbox(sender, encoding) + (b" SMTPUTF8\r\n" if utf8 else b"\r\n")
    )
    response = await _reply(client, protocol)
    if response.code != 250:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
    for recipient in recipients:
        protocol.write(b"RCPT TO:" + mailbox(recipient, encoding) + b"\r\n")
        response = await _reply(client, protocol)
        if response.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)
    protocol.write(b"DATA\r\n")
    response = await _reply(client, protocol)
    if response.code != 354:
        raise aiosmtplib.SMTPDataError(response.code, response.message)


async def _transaction(
    client: aiosmtplib.SMTP,
    message: bytes,
    sender: str,
    recipients: list[str],
    utf8: bool,
    handover: HandOver | None,
    state: _Transaction,
) -> str:
    """MAIL, RCPT and DATA, then the hand-over mark, then the body and the end of DATA.

    Returns the text of the final 250 reply (the server's words after the code), which is where
    servers name the queue id they filed the message under.

    `sendmail()` writes DATA and its end in one call; the engine must mark the message as being
    handed over in its database after every refusal that proves non-delivery is possible (MAIL,
    RCPT, DATA) and before the final "." that hands the message over, so the conversation is
    driven command by command here. The body and its final "." go in one write.
    """
    if client.is_ehlo_or_helo_needed:
        # The extensions below are known only after EHLO (HELO for a server without ESMTP).
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    if utf8 and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    try:
        # One deadline for the three replies (each of `SMTP.execute_command`'s has its own
        # timer): the session's timeout, as for any one reply.
        async with asyncio.timeout(client.timeout):
            await _envelope(client, protocol, sender, recipients, utf8)
    except aiosmtplib.SMTPResponseException:
        # A refused envelope: reset it so the session can carry the next message.
        with contextlib.suppress(aiosmtplib.SMTPException, ConnectionError):
            await client.rset()
        raise
    except TimeoutError as exc:
        # The session is out of step with the server's replies: it cannot be reused.
        client.close()
        raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
    state.data_started = True
    # Dot-stuffing (RFC 5321 §4.5.2): a line starting with "." gets another.
    body = message.replace(b"\n.", b"\n..")
    if body.startswith(b"."):
        body = b"." + body
    body += b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"
    try:
        if handover is not None:
            await handover()
        protocol.write(body)  # raises only when nothing of it went out
    except BaseException:
        # Closing the session ends the open DATA without a final ".": nothing is delivered.
        client.close()
        raise
    try:
        response = await protocol.read_response(timeout=client.timeout)
    except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
        client.close()
        raise AmbiguousSendError(
            f"SMTP: no answer after the end of DATA ({exc or type(exc).__name__});"
            " the server may have accepted the message"
        ) from exc
    if response.code != 250:
        if response.code == 421:
            client.close()
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response.message


# Where common MTAs name the queue id in their 250 reply to the end of DATA. Tried in order;
# the first group that matches is the id. A reply none of them recognises is kept whole.
_QUEUE_ID_PATTERNS = (
    # Postfix: "250 2.0.0 Ok: queued as 4BxY1234" (also "queued as: ..." in some relays).
    re.compile(r"\bqueued as:?\s+<?([^\s<>]+?)>?(?:\s|$)", re.IGNORECASE),
    # Exim: "250 OK id=1abcde-000123-AB".
    re.compile(r"\bid=<?([^\s<>]+?)>?(?:\s|$)", re.IGNORECASE),
    # Gmail: "250 2.0.0 OK  1733040000 a1b2c3d4e5f6-123abc.45 - gsmtp".
    re.compile(r"\bOK\s+\d+\s+(\S+)\s+-\s+gsmtp\b", re.IGNORECASE),
    # Microsoft 365 / Exchange: "250 2.6.0 <message-id@host> [InternalId=12345, Hostname=...]
    # Queued mail for delivery"; the internal id is the one Exchange's message trace shows.
    re.compile(r"\bInternalId=([^\s,\]]+)", re.IGNORECASE),
    # Sendmail: "250 2.0.0 x1ABC123 Message accepted for delivery"; also Amazon SES
    # "250 Ok 0100018c1a2b3c4d-..." and other "<id> accepted/queued" forms.
    re.compile(
        r"^(?:\d\.\d{1,3}\.\d{1,3}\s+)?(?:ok:?\s+)?(?!\d\.\d{1,3}\.\d{1,3}\s)"
        r"([A-Za-z0-9][\w.@-]*\d[\w.@-]*)"
        r"(?:\s+(?:Message\s+)?(?:accepted|queued)\b|$)",
        re.IGNORECASE,
    ),
)
MAX_QUEUE_ID = 255  # the width of the log's provider_message_id column


def queue_id(reply: str) -> str:
    """The queue id a server gave in its 250 reply to the end of DATA, else the whole reply.

    `reply` is the reply's text without its code, lines joined by newlines, as aiosmtplib reads
    it. Recognised: Postfix ("2.0.0 Ok: queued as 4BxY1234" -> "4BxY1234"), Exim ("OK
    id=1abcde-000123-AB"), Sendmail ("2.0.0 x1ABC123 Message accepted for delivery"), Gmail
    ("2.0.0 OK  1733040000 a1b2c3-123.45 - gsmtp" -> "a1b2c3-123.45"), Microsoft 365
    ("[InternalId=12345, ...]" -> "12345") and Amazon SES ("Ok 0100018c...-000000"). Otherwise
    the reply, whitespace collapsed, so an operator still has the server's words to search its
    logs for. Cut to 255 characters (the log column). An empty reply gives "".
    """
    text = " ".join(reply.split())
    for pattern in _QUEUE_ID_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)[:MAX_QUEUE_ID]
    return text[:MAX_QUEUE_ID]


class SmtpEmailSender:
    """Renders the reminder email (text + HTML) and sends it through the pool."""

    provider = "smtp"

    def __init__(self, *, pool: SmtpPool, sender: str) -> None:
        self.pool = pool
        self.sender = sender
        self._sender_wire: str | None = None  # `envelope_address(sender)`, once it parsed

    def _envelope_sender(self) -> str:
        if self._sender_wire is None:
            self._sender_wire = envelope_address(self.sender)
        return self._sender_wire

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpEmailSender:
        pool = SmtpPool(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_user,
            password=reveal(settings.smtp_password),
            timeout=settings.smtp_timeout_seconds,
            size=settings.smtp_pool_size,
        )
        return cls(pool=pool, sender=settings.smtp_from)

    def compose(self, message: MessageContext) -> tuple[bytes, str]:
        """The raw MIME message (multipart/alternative: text, then HTML) and its Message-ID.

        Written directly rather than through `email.message.EmailMessage`, whose header
        registry and generator cost over 1.5 ms of CPU per message: five times the rendering,
        and a ceiling on throughput for a worker that keeps hundreds of messages in flight.
        """
        return self._compose(message, self._envelope_sender(), envelope_address(message.recipient))

    def _compose(self, message: MessageContext, sender: str, recipient: str) -> tuple[bytes, str]:
        rendered = render_email(message)
        domain = sender.rpartition("@")[2] or "localhost"
        message_id = make_msgid(idstring=f"sr{message.log_id}", domain=domain)
        # "=_" never occurs in quoted-printable text ("=" is written "=3D"), so the boundary
        # needs no randomness to stay out of the parts; the log id keeps it unique.
        boundary = f"=_sr_{message.log_id}"
        headers = [
            _from_header(message.merchant_name, sender),
            address_header("To", None, recipient),
            text_header("Subject", rendered.subject),
            f"Date: {_date()}",
            f"Message-ID: {message_id}",
            "MIME-Version: 1.0",
            # Reminders are machine-sent: auto-responders should not answer them (RFC 3834).
            "Auto-Submitted: auto-generated",
            _fold("Content-Type", ["multipart/alternative;", f'boundary="{boundary}"']),
        ]
        parts = [
            _text_part("plain", rendered.text),
            _text_part("html", rendered.html),
        ]
        lines = [*headers, "", "This is a multipart message in MIME format.", ""]
        for part in parts:
            lines += [f"--{boundary}", part]
        lines += [f"--{boundary}--", ""]
        return "\r\n".join(lines).encode("utf-8"), message_id

    async def send(self, message: MessageContext, handover: HandOver | None = None) -> str:
        """Send one reminder; returns the server's queue id, raises a classified SendError.

        The queue id comes from the 250 reply to the end of DATA (`queue_id`), the reply the
        transaction reads anyway, so it costs no round trip; it is what the operator's mail
        server logs the message under. The Message-ID header embeds `sr<log id>` for the same
        search on the receiving side.

        `handover` is awaited right before the end of DATA. A timeout or hang-up after that is
        `AmbiguousSendError` (never retried); one before it is transient.

        The envelope carries the domain's A-label (IDNA 2008), so an internationalised domain
        needs nothing of the server; a non-ASCII local part needs SMTPUTF8 (RFC 6531), and
        without it the message fails saying so.
        """
        try:
            recipient = envelope_address(message.recipient)
            sender = self._envelope_sender()
        except ValueError as exc:
            raise PermanentSendError(f"address not deliverable: {exc}", status="bounced") from exc
        raw, _ = self._compose(message, sender, recipient)
        try:
            reply = await self.pool.send(
                raw, sender=sender, recipients=[recipient], handover=handover
            )
        except aiosmtplib.SMTPNotSupported as exc:
            if recipient.isascii() and sender.isascii():
                raise PermanentSendError(f"SMTP error: {exc}") from exc
            raise PermanentSendError(
                f"the address {_non_ascii_one(recipient, sender)} has a non-ASCII local part, "
                "which needs SMTPUTF8 (RFC 6531), and the SMTP server does not offer SMTPUTF8"
            ) from exc
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise _recipient_error(exc) from exc
        except aiosmtplib.SMTPResponseException as exc:
            text = f"SMTP {exc.code} {exc.message}".strip()
            if 400 <= exc.code < 500:
                raise TransientSendError(text) from exc
            raise PermanentSendError(text) from exc
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            raise TransientSendError(f"SMTP timeout: {exc or 'no answer'}") from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            raise TransientSendError(f"SMTP connection error: {exc}") from exc
        except aiosmtplib.SMTPException as exc:
            # e.g. STARTTLS or SMTPUTF8 not supported: configuration, not bad luck.
            raise PermanentSendError(f"SMTP error: {exc}") from exc
        return queue_id(reply)

    async def aclose(self) -> None:
        await self.pool.aclose()


def envelope_address(address: str) -> str:
    """The address as it goes on the wire: local part unchanged, domain as its A-label.

    `kunde@müller-shop.example` -> `kunde@xn--mller-shop-9db.example` (IDNA 2008 with UTS #46
    mapping, through `idna`), so a server without SMTPUTF8 can take it. The local part keeps
    its case and any `+tag` (RFC 5321 §2.4: only the receiving host may interpret it).
    ValueError when the domain is not a valid IDNA 2008 name.
    """
    local, at, domain = _one_line(address).rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{address!r} has no local part and domain")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"the domain of {address!r} is not a valid IDNA name ({exc})") from exc
    return f"{local}@{domain}"


def _non_ascii_one(*addresses: str) -> str:
    return next((a for a in addresses if not a.isascii()), addresses[0])


# RFC 5322 §2.1.1: lines of at most 78 characters; RFC 2047 §2: encoded-words of at most 75.
MAX_LINE = 78
MAX_ENCODED_WORD = 75
# "=?utf-8?b?" + "?=": what an encoded-word adds around its base64 text.
_WORD_CHROME = len("=?utf-8?b??=")


def text_header(name: str, value: str) -> str:
    """`Name: value` as unstructured text (Subject), folded to RFC 5322 and RFC 2047 limits.

    ASCII text folds at its spaces; a word longer than a line stays whole (it cannot be
    folded). Text with non-ASCII characters (or something that would read as an encoded-word)
    becomes base64 encoded-words of whole characters, each at most 75 characters and one per
    line. Written here because `email.header.Header` and `Charset.header_encode_lines` cost
    about 0.3 ms per header (they re-encode the text character by character).
    """
    value = _one_line(value)
    if _plain(value):
        return _fold(name, value.split(" ") if value else [])
    return _fold(name, _encoded_words(value, first=MAX_LINE - len(name) - 2))


def address_header(name: str, display_name: str | None, address: str) -> str:
    """`Name: display name <address>` (From, To), folded like `text_header`.

    An ASCII display name is quoted when RFC 5322 requires it; any other is encoded-words.
    The address must already be in wire form (`envelope_address`); it is never split.
    """
    display = _one_line(display_name or "")
    if not display:
        return _fold(name, [address])
    if _plain(display):
        if any(char in _SPECIALS for char in display):
            display = f'"{quote(display)}"'
        words = display.split(" ")
    else:
        words = _encoded_words(display, first=MAX_LINE - len(name) - 2)
    return _fold(name, [*words, f"<{address}>"])


def _date() -> str:
    """The Date header's value for now (RFC 5322), formatted once a second."""
    global _last_date
    now = utc_now().replace(microsecond=0)
    if _last_date[0] != now:
        _last_date = (now, format_datetime(now, usegmt=True))
    return _last_date[1]


_last_date: tuple[datetime | None, str] = (None, "")


@lru_cache(maxsize=1024)
def _from_header(merchant_name: str, sender: str) -> str:
    return address_header("From", merchant_name, sender)


_SPECIALS = frozenset('()<>[]:;@\\,."')


def _plain(text: str) -> bool:
    # Printable ASCII that no decoder would take for an encoded-word goes out as it is.
    return text.isascii() and text.isprintable() and "=?" not in text


def _fold(name: str, pieces: list[str]) -> str:
    """The pieces joined by spaces, a new line (CRLF + space) before a piece that would pass 78."""
    lines = [f"{name}:"]
    for piece in pieces:
        if len(lines[-1]) + 1 + len(piece) > MAX_LINE and lines[-1].strip() not in ("", f"{name}:"):
            lines.append("")
        lines[-1] += " " + piece
    return "\r\n".join(lines)


def _encoded_words(value: str, *, first: int) -> list[str]:
    """`value` as utf-8 base64 encoded-words: the first fits in `first` characters, the others
    in 75 (so each fits a folded line of its own); characters are never split."""
    data = value.encode("utf-8")
    words: list[str] = []
    limit = _payload_bytes(min(first, MAX_ENCODED_WORD))
    start = 0
    while True:
        end = min(start + limit, len(data))
        # Back off to the start of a character (utf-8 continuation bytes are 0b10xxxxxx).
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        if end >= len(data):
            return words
        start, limit = end, _payload_bytes(MAX_ENCODED_WORD)


def _payload_bytes(word_length: int) -> int:
    # base64 makes 4 characters of every 3 bytes.
    return max(4, (word_length - _WORD_CHROME) // 4 * 3)


def _one_line(value: str) -> str:
    # A line break in a header value would end the header (header injection).
    return " ".join(value.split())


def _text_part(subtype: str, text: str) -> str:
    body = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    encoded = body.decode("ascii").replace("\n", "\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
        f"\r\n{encoded}"
    )


def _recipient_error(refusal: aiosmtplib.SMTPRecipientRefused) -> Exception:
    text = f"SMTP {refusal.code} {refusal.message}".strip()
    if 400 <= refusal.code < 500:
        return TransientSendError(text)
    return PermanentSendError(text, status="bounced")
