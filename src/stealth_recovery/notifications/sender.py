"""`ProviderNotifier`: the real providers behind the engine's `Notifier` interface.

One instance per worker process holds one client per channel (a pool of SMTP sessions, an
HTTP client per API) and keeps many sends in flight. `send()` never raises and never touches
the database: it renders, calls the provider with a few quick retries on transient errors
(separate from the customer-facing schedule), and returns the outcome for the engine to log.
A transient failure that outlasts the quick retries comes back as TRANSIENT: the engine makes
the step due again later. A circuit breaker per provider stops calls to a provider that keeps
failing, so an outage is not hammered by every message in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import structlog
from jinja2 import TemplateError
from prometheus_client import Counter, Histogram

from stealth_recovery.core.metrics import MESSAGES, SEND_SECONDS
from stealth_recovery.core.settings import Settings, get_settings
from stealth_recovery.notifications import twilio, whatsapp
from stealth_recovery.notifications.breaker import CircuitBreaker
from stealth_recovery.notifications.errors import (
    AmbiguousSendError,
    HandOverRefused,
    PermanentSendError,
    TransientSendError,
)
from stealth_recovery.notifications.models import Channel, NotificationStatus
from stealth_recovery.notifications.rendering import RenderError
from stealth_recovery.notifications.smtp import SmtpEmailSender
from stealth_recovery.notifications.types import (
    TRANSIENT,
    WITHHELD,
    HandOver,
    MessageContext,
    SendOutcome,
)

log = structlog.get_logger(__name__)

PROVIDERS: dict[str, str] = {
    Channel.email: "smtp",
    Channel.sms: "twilio",
    Channel.whatsapp: "whatsapp",
}


# The metrics' children by label values, kept: `labels()` validates and locks on every call.
@cache
def _messages(channel: str, status: str) -> Counter:
    return MESSAGES.labels(channel=channel, status=status)


@cache
def _send_seconds(channel: str) -> Histogram:
    return SEND_SECONDS.labels(channel=channel)


def _debug_enabled() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)


# How long a message waits for the verdict of a probe of its provider before it is deferred.
PROBE_WAIT_SECONDS = 30.0


class Sender(Protocol):
    provider: str

    async def send(self, message: MessageContext, handover: HandOver | None = None) -> str:
        """Send one message, awaiting `handover` right before the hand-over; the provider's
        message id, or a `SendError` (`AmbiguousSendError` once handed over without an answer),
        or `HandOverRefused` from `handover`."""
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
        breaker_failures: int = 5,
        breaker_cooldown_seconds: float = 30.0,
    ) -> None:
        self._senders = dict(senders)
        self._unavailable = dict(unavailable or {})
        self._retry = retry or TransientRetry()
        self._breaker_failures = breaker_failures
        self._breaker_cooldown = breaker_cooldown_seconds
        self._breakers: dict[str, CircuitBreaker] = {}

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
            breaker_failures=settings.provider_breaker_failures,
            breaker_cooldown_seconds=settings.provider_breaker_cooldown_seconds,
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

    async def send(self, message: MessageContext, handover: HandOver | None = None) -> SendOutcome:
        """Render and send one message; `handover` runs right before the hand-over begins.

        Outcomes: sent, failed, bounced, unconfirmed (handed over without an answer),
        TRANSIENT (not delivered: try again later; also while the provider's breaker is open)
        or WITHHELD (the engine refused the hand-over: paid, or no longer our step).
        """
        started = time.perf_counter()
        provider = self.provider_for(message.channel)
        reason = self.unavailable_reason(message.channel)
        if reason is not None:
            outcome = SendOutcome(NotificationStatus.failed, provider, error_message=reason)
        else:
            try:
                outcome = await self._send_with_retries(
                    self._senders[message.channel], message, handover
                )
            except Exception as exc:  # the engine must get an outcome, whatever went wrong
                log.exception("notification_send_crashed", log_id=message.log_id)
                outcome = SendOutcome(
                    NotificationStatus.failed,
                    provider,
                    error_message=f"internal error: {type(exc).__name__}: {exc}",
                )
        _messages(message.channel, outcome.status).inc()
        _send_seconds(message.channel).observe(time.perf_counter() - started)
        if outcome.status == NotificationStatus.sent:
            # The hot path (thousands a second): a debug line, and only when debug is on (a
            # logger call costs a bound logger even when its level is filtered out).
            if _debug_enabled():
                log.debug(
                    "notification_sent",
                    log_id=message.log_id,
                    attempt_id=message.attempt_id,
                    channel=message.channel,
                    provider_message_id=outcome.provider_message_id,
                )
            return outcome
        log.info(
            "notification_not_sent",
            log_id=message.log_id,
            attempt_id=message.attempt_id,
            channel=message.channel,
            status=outcome.status,
            provider_message_id=outcome.provider_message_id,
            error=outcome.error_message,
        )
        return outcome

    def breaker(self, provider: str) -> CircuitBreaker:
        """The circuit breaker of one provider in this process."""
        if provider not in self._breakers:
            self._breakers[provider] = CircuitBreaker(
                failures=self._breaker_failures, cooldown_seconds=self._breaker_cooldown
            )
        return self._breakers[provider]

    async def _send_with_retries(
        self, sender: Sender, message: MessageContext, handover: HandOver | None
    ) -> SendOutcome:
        provider = sender.provider
        breaker = self.breaker(provider)
        marked = False

        async def mark() -> None:
            nonlocal marked
            if handover is not None:
                await handover()
            marked = True

        delay = self._retry.backoff_seconds
        tries = max(1, self._retry.tries)
        for attempt in range(1, tries + 1):
            allowed = breaker.allow()
            if not allowed and breaker.probing:
                # A probe is testing the provider: its verdict is worth waiting for, so a
                # recovered provider gets the waiting messages at once, not a backoff later.
                waited = 0.0
                while breaker.probing and waited < PROBE_WAIT_SECONDS:
                    await asyncio.sleep(0.05)
                    waited += 0.05
                allowed = breaker.allow()
            if not allowed:
                return SendOutcome(
                    TRANSIENT,
                    provider,
                    error_message=f"{provider} is failing: calls paused (circuit breaker open)",
                    handed_over=marked,
                )
            try:
                message_id = await sender.send(message, mark)
            except (RenderError, TemplateError) as exc:
                return SendOutcome(
                    NotificationStatus.failed,
                    provider,
                    error_message=f"template: {exc}",
                    handed_over=marked,
                )
            except HandOverRefused as exc:
                return SendOutcome(
                    TRANSIENT if exc.transient else WITHHELD,
                    provider,
                    error_message=str(exc),
                    handed_over=marked,
                )
            except PermanentSendError as exc:
                breaker.success()
                return SendOutcome(exc.status, provider, error_message=str(exc), handed_over=marked)
            except AmbiguousSendError as exc:
                breaker.failure()
                return SendOutcome(
                    NotificationStatus.unconfirmed,
                    provider,
                    error_message=str(exc),
                    handed_over=True,
                )
            except TransientSendError as exc:
                breaker.failure()
                if attempt == tries:
                    return SendOutcome(
                        TRANSIENT,
                        provider,
                        error_message=f"{exc} ({tries} tries)",
                        handed_over=marked,
                    )
                wait = delay
                if exc.retry_after is not None:
                    if exc.retry_after > self._retry.max_retry_after_seconds:
                        # Waiting that long would hold the step: it comes due again instead.
                        return SendOutcome(
                            TRANSIENT,
                            provider,
                            error_message=f"{exc} (asked to wait {exc.retry_after:g}s)",
                            handed_over=marked,
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
                breaker.success()
                return SendOutcome(NotificationStatus.sent, provider, message_id, handed_over=True)
        raise AssertionError("unreachable: the last try always returns")

    async def aclose(self) -> None:
        await asyncio.gather(
            *(sender.aclose() for sender in self._senders.values()), return_exceptions=True
        )
