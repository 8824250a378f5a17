"""What the retry engine hands to the notifier, and what it gets back.

The engine loads a `MessageContext` for every (attempt, step, channel) it has claimed and
written as a `pending` log row, then awaits `Notifier.send()` for many of them concurrently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

# Outcomes that are not log statuses: the engine turns them into one.
TRANSIENT = "transient"  # not delivered, worth another try later (outage, throttling, 4xx)
WITHHELD = "withheld"  # not handed over: the engine refused at the last moment (see HandOver)

# Called by a sender immediately before the hand-over begins (before the end of SMTP DATA,
# before the HTTP request): marks the message as being handed over, in the database, after
# checking the attempt is still open and still ours. Raises `HandOverRefused` to withhold it.
HandOver = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class MessageContext:
    log_id: int
    attempt_id: int
    organization_id: int
    retry_number: int  # 0-based step; templates show retry_number + 1
    max_retries: int
    channel: str  # email / sms / whatsapp
    recipient: str  # email address or E.164 number
    locale: str  # customer's locale, e.g. "en", "es-ES"
    timezone: str  # customer's IANA time zone, for the expiry date
    merchant_name: str
    customer_name: str | None
    amount_minor: int
    currency: str
    pay_url: str
    expires_at: datetime
    decline_category: str  # soft / customer_action / hard


@dataclass(frozen=True)
class SendOutcome:
    # "sent", "failed", "bounced", "unconfirmed" (handed over, no answer), TRANSIENT or WITHHELD
    status: str
    provider: str  # "smtp", "twilio", "whatsapp"
    provider_message_id: str | None = None
    error_message: str | None = None
    handed_over: bool = False  # the hand-over mark was written (the provider may have it)


class Notifier(Protocol):
    """Provider clients of one worker process; keeps many sends in flight."""

    def provider_for(self, channel: str) -> str:
        """The provider name logged for a channel (e.g. "smtp")."""
        ...

    def unavailable_reason(self, channel: str) -> str | None:
        """Why the channel cannot send at all (provider not configured), or None."""
        ...

    async def send(self, message: MessageContext, handover: HandOver | None = None) -> SendOutcome:
        """Render and send one message, calling `handover` right before the hand-over begins.

        Never raises: every error becomes an outcome.
        """
        ...

    async def aclose(self) -> None: ...
