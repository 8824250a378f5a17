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
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime, formataddr, make_msgid

import aiosmtplib

from stealth_recovery.core.settings import Settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications.errors import PermanentSendError, TransientSendError
from stealth_recovery.notifications.rendering import render_email
from stealth_recovery.notifications.types import MessageContext

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
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Connection] = []

    async def send(self, message: bytes, *, sender: str, recipients: list[str]) -> None:
        """Send a raw message on a pooled session; aiosmtplib errors propagate to the caller."""
        # Internationalised addresses need SMTPUTF8 (RFC 6531); ASCII ones must not ask for it.
        options = [] if all(a.isascii() for a in (sender, *recipients)) else ["SMTPUTF8"]
        slots = self._bind_loop()
        async with slots:
            connection, reused = await self._checkout()
            try:
                await connection.client.sendmail(sender, recipients, message, mail_options=options)
            except aiosmtplib.SMTPServerDisconnected:
                self._discard(connection)
                if not reused:
                    raise
                # Almost always a session the server closed while it sat idle in the pool, before
                # our message: resend once on a fresh session rather than fail the message.
                connection, _ = await self._checkout(fresh=True)
                try:
                    await connection.client.sendmail(
                        sender, recipients, message, mail_options=options
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

    async def aclose(self) -> None:
        """Say QUIT on every idle session of the current loop."""
        idle, self._idle = self._idle, []
        if self._loop is not asyncio.get_running_loop():
            return  # sessions of a finished loop cannot be spoken to any more
        await asyncio.gather(*(self._quit(c) for c in idle), return_exceptions=True)

    def _bind_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            # Sessions belong to the loop that opened them (e.g. one asyncio.run per tick).
            for connection in self._idle:
                self._discard(connection)
            self._idle = []
            self._loop = loop
            self._slots = asyncio.Semaphore(self.size)
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
        refused = isinstance(exc, aiosmtplib.SMTPRecipientsRefused) or (
            isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code != 421
        )
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


class SmtpEmailSender:
    """Renders the reminder email (text + HTML) and sends it through the pool."""

    provider = "smtp"

    def __init__(self, *, pool: SmtpPool, sender: str) -> None:
        self.pool = pool
        self.sender = sender

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpEmailSender:
        pool = SmtpPool(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_user,
            password=settings.smtp_password,
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
        rendered = render_email(message)
        domain = self.sender.rpartition("@")[2] or "localhost"
        message_id = make_msgid(idstring=f"sr{message.log_id}", domain=domain)
        boundary = f"=_sr_{uuid.uuid4().hex}"
        headers = [
            f"From: {formataddr((_one_line(message.merchant_name), self.sender), 'utf-8')}",
            f"To: {_one_line(message.recipient)}",
            f"Subject: {_header_text(rendered.subject)}",
            f"Date: {format_datetime(utc_now(), usegmt=True)}",
            f"Message-ID: {message_id}",
            "MIME-Version: 1.0",
            # Reminders are machine-sent: auto-responders should not answer them (RFC 3834).
            "Auto-Submitted: auto-generated",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
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

    async def send(self, message: MessageContext) -> str:
        """Send one reminder; returns its Message-ID, raises a classified SendError."""
        raw, message_id = self.compose(message)
        try:
            await self.pool.send(raw, sender=self.sender, recipients=[message.recipient])
        except aiosmtplib.SMTPRecipientsRefused as exc:
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
        return message_id

    async def aclose(self) -> None:
        await self.pool.aclose()


def _one_line(value: str) -> str:
    # A line break in a header value would end the header (header injection).
    return " ".join(value.split())


def _header_text(value: str) -> str:
    """A header value, as RFC 2047 base64 encoded-words when it is not ASCII.

    Done by hand because `email.header.Header` measures every character for quoted-printable
    and costs about as much as rendering the whole email.
    """
    value = _one_line(value)
    if value.isascii():
        return value
    words, chunk = [], b""
    for char in value:
        encoded = char.encode("utf-8")
        # 45 bytes of UTF-8 make 60 base64 characters: each encoded-word stays within 75.
        if len(chunk) + len(encoded) > 45:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words)


def _text_part(subtype: str, text: str) -> str:
    body = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    encoded = body.decode("ascii").replace("\n", "\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
        f"\r\n{encoded}"
    )


def _recipient_error(exc: aiosmtplib.SMTPRecipientsRefused) -> Exception:
    refusal = exc.recipients[0] if exc.recipients else None
    if refusal is None:
        return PermanentSendError("SMTP recipient refused")
    text = f"SMTP {refusal.code} {refusal.message}".strip()
    if 400 <= refusal.code < 500:
        return TransientSendError(text)
    return PermanentSendError(text, status="bounced")
