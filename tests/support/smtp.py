"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives.

`SmtpSink` runs aiosmtpd on its own event loop in a background thread, on 127.0.0.1 and an
ephemeral port. It can hold every message for a settable latency (awaited, so hundreds of
connections wait concurrently), answer chosen recipients with a given SMTP reply, answer DATA
with a given reply, require a login, and speak STARTTLS or implicit TLS. Every accepted message
gets a fresh queue id, named in the 250 reply the way `accept_reply` says (Postfix's form unless
a test picks another server's).

Use the `smtp_sink` fixture (import it into your conftest:
`from tests.support.smtp import smtp_sink  # noqa: F401`); it also points `SMTP_HOST` /
`SMTP_PORT` at the sink and clears the `get_settings` cache.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import secrets
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Security = Literal["none", "starttls", "ssl"]


@dataclass
class ReceivedMessage:
    """One message as the sink accepted it: the envelope and the message parsed on first use."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    smtputf8: bool = False  # whether the client asked for SMTPUTF8 in MAIL FROM
    received_at: float = 0.0  # time.monotonic() when the end of DATA arrived
    queue_id: str = ""  # the id the sink filed it under and named in its 250 reply

    @cached_property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def body(self, subtype: str) -> str:
        """The decoded text of the `text/<subtype>` part ("plain" or "html")."""
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        assert isinstance(part, EmailMessage)
        return str(part.get_content())


@dataclass
class _Rule:
    reply: str
    times: int | None  # None: every time


@dataclass
class _Handler:
    sink: SmtpSink

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        hold = self.sink.hold_rcpt
        while hold is not None and not hold.is_set():
            await asyncio.sleep(0.01)  # a server slow to accept recipients (before DATA)
        reply = self.sink._recipient_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        arrived = time.monotonic()
        message = ReceivedMessage(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            raw=bytes(envelope.original_content or b""),
            received_at=arrived,
            smtputf8=bool(envelope.smtp_utf8),
        )
        if self.sink.hang_seconds > 0:
            # A hung server: it has queued the message but answers late (or never, for us).
            self.sink._store(message)
            await asyncio.sleep(self.sink.hang_seconds)
            return "250 Message accepted for delivery"
        latency = self.sink.latency
        if latency > 0:
            await asyncio.sleep(latency)
        if self.sink.data_reply is not None:
            return self.sink.data_reply
        content = envelope.original_content or b""
        header_section = content.split(b"\r\n\r\n", 1)[0]
        if not envelope.smtp_utf8 and not header_section.isascii():
            return "554 5.6.7 Non-ASCII header without SMTPUTF8"
        message.queue_id = secrets.token_hex(5).upper()
        self.sink._store(message)
        return self.sink.accept_reply.format(queue_id=message.queue_id)


@dataclass
class SmtpSink:
    """aiosmtpd on 127.0.0.1:<ephemeral>, in a thread, recording every accepted message."""

    latency: float = 0.0  # seconds each DATA is held before the answer (awaited, not blocking)
    security: Security = "none"
    credentials: tuple[str, str] | None = None  # require AUTH with these when set
    data_reply: str | None = None  # answer DATA with this reply (e.g. "554 5.6.0 rejected")
    # The reply to an accepted message; "{queue_id}" becomes the id it was filed under.
    accept_reply: str = "250 2.0.0 Ok: queued as {queue_id}"
    smtputf8: bool = True  # announce and accept SMTPUTF8 (RFC 6531)
    hang_seconds: float = 0.0  # keep each message, then hold the 250 this long (a hung server)
    hold_rcpt: threading.Event | None = None  # while set-able and not set, RCPT waits
    down: bool = False  # hang up on every new connection at once (a server out of service)
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0  # connections accepted so far (shows connection reuse)
    _messages: list[ReceivedMessage] = field(default_factory=list)
    _rules: dict[str, _Rule] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _startup_error: BaseException | None = None
    _tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None
    _protocols: list[SMTP] = field(default_factory=list)

    # --- control -------------------------------------------------------------------------
    def reject(self, recipient: str, code: int, message: str, *, times: int | None = None) -> None:
        """Answer RCPT TO <recipient> with `code message` (every time, or the next `times`)."""
        with self._lock:
            self._rules[recipient.lower()] = _Rule(reply=f"{code} {message}", times=times)

    def clear_rejections(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def messages_to(self, recipient: str) -> list[ReceivedMessage]:
        wanted = recipient.lower()
        return [m for m in self.messages if wanted in (r.lower() for r in m.rcpt_tos)]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """The messages once at least `count` have arrived (fails after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.messages
            if len(messages) >= count:
                return messages
            time.sleep(0.01)
        raise AssertionError(f"expected {count} messages, the sink has {len(self.messages)}")

    def disconnect_all(self) -> None:
        """Hang up on every open client connection, as a server does with idle sessions."""
        loop = self._loop
        assert loop is not None, "the sink is not running"
        done = threading.Event()

        def hang_up() -> None:
            for protocol in self._protocols:
                if protocol.transport is not None:
                    protocol.transport.close()
            done.set()

        loop.call_soon_threadsafe(hang_up)
        done.wait(5)

    def client_tls_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this sink's self-signed certificate."""
        assert self._tls is not None, "the sink runs without TLS"
        return self._tls[1]

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> SmtpSink:
        if self.security != "none":
            self._tls = _self_signed_contexts()
        self._thread = threading.Thread(target=self._run, name="smtp-sink", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("SMTP sink did not start")
        if self._startup_error is not None:
            raise RuntimeError("SMTP sink did not start") from self._startup_error
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------------
    def _recipient_reply(self, address: str) -> str | None:
        with self._lock:
            rule = self._rules.get(address.lower())
            if rule is None:
                return None
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    del self._rules[address.lower()]
            return rule.reply

    def _store(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(message)

    def _protocol(self) -> asyncio.Protocol:
        with self._lock:
            self.connections += 1
        if self.down:
            return _HangUp()
        options: dict[str, Any] = {
            "hostname": "sink.test",
            "ident": "stealth-recovery test sink",
            "enable_SMTPUTF8": self.smtputf8,
        }
        if self.security == "starttls" and self._tls is not None:
            options["tls_context"] = self._tls[0]
            options["require_starttls"] = True
        if self.credentials is not None:
            options["authenticator"] = self._authenticate
            options["auth_required"] = True
            # Implicit TLS is invisible to aiosmtpd, so it would refuse AUTH without this.
            options["auth_require_tls"] = self.security == "starttls"
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without STARTTLS; with implicit TLS the link is encrypted.
            warnings.simplefilter("ignore", UserWarning)
            protocol = SMTP(_Handler(self), **options)
        self._protocols.append(protocol)
        return protocol

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.credentials is not None
        if isinstance(data, LoginPassword):
            given = (data.login.decode(), data.password.decode())
            if given == self.credentials:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            server_ssl = self._tls[0] if self.security == "ssl" and self._tls else None
            server = loop.run_until_complete(
                loop.create_server(
                    self._protocol, self.host, self.port, ssl=server_ssl, backlog=1024
                )
            )
            self.port = server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()


class _HangUp(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def _self_signed_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and a client one
    that trusts exactly that certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with tempfile.TemporaryDirectory() as folder:
        cert_path = Path(folder) / "cert.pem"
        key_path = Path(folder) / "key.pem"
        cert_path.write_bytes(cert_pem)
        key_path.write_bytes(key_pem)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


@pytest.fixture
def smtp_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    """A running sink; SMTP_HOST/SMTP_PORT point at it (plain SMTP, no login) for this test."""
    from stealth_recovery.core.settings import get_settings

    with SmtpSink() as sink:
        monkeypatch.setenv("SMTP_HOST", sink.host)
        monkeypatch.setenv("SMTP_PORT", str(sink.port))
        monkeypatch.setenv("SMTP_SECURITY", "none")
        monkeypatch.delenv("SMTP_USER", raising=False)
        monkeypatch.delenv("SMTP_PASSWORD", raising=False)
        get_settings.cache_clear()
        try:
            yield sink
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()
