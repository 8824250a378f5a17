"""One-off service e-mails to users (password reset) through the configured SMTP server.

Reminders to customers go through `notifications.smtp` (pooled sessions, thousands in flight);
a service e-mail is one message now and then, so it opens one session with the same settings.
Lives in core because `auth` sits below `notifications` in the import order.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import aiosmtplib
import structlog

from stealth_recovery.core.settings import Settings, get_settings, reveal

log = structlog.get_logger(__name__)


def service_email(*, to: str, subject: str, text: str, settings: Settings) -> EmailMessage:
    """A plain-text message from SMTP_FROM, signed as the service."""
    message = EmailMessage()
    message["From"] = formataddr(("Stealth Recovery", settings.smtp_from))
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    return message


def send_service_email(*, to: str, subject: str, text: str) -> bool:
    """Send one service e-mail; False (logged, never raised) when the server refuses or fails.

    Called after the response is sent, so a slow or down server delays nobody.
    """
    settings = get_settings()
    message = service_email(to=to, subject=subject, text=text, settings=settings)
    try:
        asyncio.run(
            aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                use_tls=settings.smtp_security == "ssl",
                start_tls=settings.smtp_security == "starttls",
                username=settings.smtp_user or None,
                password=reveal(settings.smtp_password) if settings.smtp_user else None,
                timeout=settings.smtp_timeout_seconds,
            )
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        log.warning("service_email_failed", subject=subject, error=type(exc).__name__)
        return False
    log.info("service_email_sent", subject=subject)
    return True
