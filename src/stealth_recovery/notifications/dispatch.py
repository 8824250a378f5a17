"""`ProviderNotifier`: the real providers behind the engine's `Notifier` interface.

One instance per worker process holds one client per channel (a pool of SMTP sessions, an
HTTP client per API) and keeps many sends in flight. `send()` never raises and never touches
the database: it renders, calls the provider with a few quick retries on transient errors
(separate from the customer-facing schedule), and returns the outcome for the engine to log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog
from jinja2 import TemplateError

from stealth_recovery.core.metrics import MESSAGES, SEND_SECONDS
from stealth_recovery.core.settings import Settings, get_settings
from stealth_recovery.notifications import twilio, whatsapp
from stealth_recovery.notifications.errors import PermanentSendError, TransientSendError
from stealth_recovery.notifications.models import Channel, NotificationStatus
from stealth_recovery.notifications.rendering import RenderError
from stealth_recovery.notifications.smtp import SmtpEmailSender
from stealth_recovery.notifications.types import MessageContext, SendOutcome

log = structlog.get_logger(__name__)

PROVIDERS: dict[str, str] = {
    Channel.email: "smtp",
    Channel.sms: "twilio",
    Channel.whatsapp: "whatsapp",
}


class Sender(Protocol):
    provider: str

    async def send(self, message: MessageContext) -> str:
        """Send one message; the provider's message id, or a `SendError`."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class TransientRetry:
    """Quick retries inside one step for errors that are likely gone in a moment."""

    tries: int = 3  # calls per message, the first included
    backoff_seconds: float = 0.2  # wait before the second call; doubled before each next one
    max_retry_after_seconds: float = 5.0  # a longer Retry-After gives up instead of blocking

    @classmethod
    def from_settings(cls, settings: Settings) -> TransientRetry:
        return cls(
            tries=settings.provider_retry_attempts,
            backoff_seconds=settings.provider_retry_backoff_seconds,
            max_retry_after_seconds=settings.provider_retry_after_max_seconds,
        )


class ProviderNotifier:
    """Email (SMTP), SMS (Twilio) and WhatsApp (Cloud API) senders of one worker process."""

    def __init__(
        self,
        *,
        senders: Mapping[str, Sender],
        unavailable: Mapping[str, str] | None = None,
        retry: TransientRetry | None = None,
    ) -> None:
        self._senders = dict(senders)
        self._unavailable = dict(unavailable or {})
        self._retry = retry or TransientRetry()

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, retry: TransientRetry | None = None
    ) -> ProviderNotifier:
        """Every channel whose provider is configured; the others say what is missing.

        Channels routed to the local outbox (`outbox.outbox_channels`) get the outbox sender.
        """
        from stealth_recovery.notifications.outbox import OutboxSender, outbox_channels

        settings = settings or get_settings()
        senders: dict[str, Sender] = {}
        unavailable: dict[str, str] = {}
        kept = outbox_channels(settings)
        for channel in kept:
            senders[channel] = OutboxSender.from_settings(channel, settings)
        if Channel.email not in kept:
            senders[Channel.email] = SmtpEmailSender.from_settings(settings)
        if Channel.sms not in kept:
            if missing := twilio.missing_settings(settings):
                unavailable[Channel.sms] = "not configured: set " + ", ".join(missing)
            else:
                senders[Channel.sms] = twilio.TwilioSmsSender.from_settings(settings)
        if Channel.whatsapp not in kept:
            if missing := whatsapp.missing_settings(settings):
                unavailable[Channel.whatsapp] = "not configured: set " + ", ".join(missing)
            else:
                senders[Channel.whatsapp] = whatsapp.WhatsAppSender.from_settings(settings)
        return cls(
            senders=senders,
            unavailable=unavailable,
            retry=retry or TransientRetry.from_settings(settings),
        )

    def provider_for(self, channel: str) -> str:
        if channel in self._senders:
            return self._senders[channel].provider
        return PROVIDERS.get(channel, channel)

    def unavailable_reason(self, channel: str) -> str | None:
        if channel not in PROVIDERS:
            return f"unknown channel {channel!r}"
        if channel in self._unavailable:
            return self._unavailable[channel]
        if channel not in self._senders:
            return f"no provider for {channel}"
        return None

    async def send(self, message: MessageContext) -> SendOutcome:
        started = time.perf_counter()
        provider = self.provider_for(message.channel)
        reason = self.unavailable_reason(message.channel)
        if reason is not None:
            outcome = SendOutcome(NotificationStatus.failed, provider, error_message=reason)
        else:
            try:
                outcome = await self._send_with_retries(self._senders[message.channel], message)
            except Exception as exc:  # the engine must get an outcome, whatever went wrong
                log.exception("notification_send_crashed", log_id=message.log_id)
                outcome = SendOutcome(
                    NotificationStatus.failed,
                    provider,
                    error_message=f"internal error: {type(exc).__name__}: {exc}",
                )
        MESSAGES.labels(channel=message.channel, status=outcome.status).inc()
        SEND_SECONDS.labels(channel=message.channel).observe(time.perf_counter() - started)
        # Success is the hot path (thousands a second): debug; anything else is worth a line.
        emit = log.debug if outcome.status == NotificationStatus.sent else log.info
        emit(
            "notification_sent" if outcome.status == "sent" else "notification_not_sent",
            log_id=message.log_id,
            attempt_id=message.attempt_id,
            channel=message.channel,
            status=outcome.status,
            provider_message_id=outcome.provider_message_id,
            error=outcome.error_message,
        )
        return outcome

    async def _send_with_retries(self, sender: Sender, message: MessageContext) -> SendOutcome:
        delay = self._retry.backoff_seconds
        tries = max(1, self._retry.tries)
        for attempt in range(1, tries + 1):
            try:
                message_id = await sender.send(message)
            except (RenderError, TemplateError) as exc:
                return SendOutcome(
                    NotificationStatus.failed, sender.provider, error_message=f"template: {exc}"
                )
            except PermanentSendError as exc:
                return SendOutcome(exc.status, sender.provider, error_message=str(exc))
            except TransientSendError as exc:
                if attempt == tries:
                    return SendOutcome(
                        NotificationStatus.failed,
                        sender.provider,
                        error_message=f"{exc} (gave up after {tries} tries)",
                    )
                wait = delay
                if exc.retry_after is not None:
                    if exc.retry_after > self._retry.max_retry_after_seconds:
                        return SendOutcome(
                            NotificationStatus.failed,
                            sender.provider,
                            error_message=f"{exc} (asked to wait {exc.retry_after:g}s)",
                        )
                    wait = max(exc.retry_after, delay)
                log.info(
                    "notification_transient_error",
                    log_id=message.log_id,
                    channel=message.channel,
                    attempt=attempt,
                    error=str(exc),
                    wait_seconds=wait,
                )
                await asyncio.sleep(wait)
                delay *= 2
            else:
                return SendOutcome(NotificationStatus.sent, sender.provider, message_id)
        raise AssertionError("unreachable: the last try always returns")

    async def aclose(self) -> None:
        await asyncio.gather(
            *(sender.aclose() for sender in self._senders.values()), return_exceptions=True
        )
