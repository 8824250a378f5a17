"""The local outbox: a delivery provider that keeps each message instead of sending it.

On the embedded local set-up there is usually no mail server and no Twilio or WhatsApp
account. Rather than failing every reminder, each channel without a provider is routed here:
the message is rendered exactly as the real provider would get it (the e-mail's subject, text
and HTML; the SMS text and its segment count; the WhatsApp template, language and parameters)
and stored in `outbox_messages`, which the dashboard shows per channel. Its log row says
provider `outbox` and never becomes `delivered`: nothing reached a customer.

`DELIVERY_MODE` picks the route: `auto` (the default) uses the outbox only on the embedded local
set-up (ENVIRONMENT=local, no Celery broker) and only for channels whose provider is not set;
`outbox` routes every channel here; `providers` never uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.settings import Settings
from stealth_recovery.notifications import twilio, whatsapp
from stealth_recovery.notifications.models import Channel, OutboxMessage
from stealth_recovery.notifications.rendering import (
    render_email,
    render_sms,
    render_whatsapp,
    sms_segments,
)
from stealth_recovery.notifications.types import HandOver, MessageContext

PROVIDER = "outbox"


def outbox_channels(settings: Settings) -> frozenset[str]:
    """The channels whose messages go to the outbox under these settings."""
    if settings.delivery_mode == "outbox":
        return frozenset(Channel)
    if settings.delivery_mode == "providers":
        return frozenset()
    if settings.environment != "local" or settings.uses_celery:
        return frozenset()
    channels = set()
    if "smtp_host" not in settings.model_fields_set:
        channels.add(Channel.email)
    if twilio.missing_settings(settings):
        channels.add(Channel.sms)
    if whatsapp.missing_settings(settings):
        channels.add(Channel.whatsapp)
    return frozenset(channels)


def describe_routes(settings: Settings) -> dict[str, str]:
    """Where each channel's messages go, one short phrase each (for `serve` to print)."""
    outbox = outbox_channels(settings)
    dashboard = settings.external_url("/dashboard/outbox")
    live = {
        Channel.email: f"SMTP {settings.smtp_host}:{settings.smtp_port}",
        Channel.sms: "Twilio",
        Channel.whatsapp: "WhatsApp Cloud API",
    }
    missing = {
        Channel.sms: twilio.missing_settings(settings),
        Channel.whatsapp: whatsapp.missing_settings(settings),
    }
    routes = {}
    for channel in Channel:
        if channel in outbox:
            routes[channel.value] = f"outbox (kept, not sent; see {dashboard})"
        elif missing.get(channel):
            routes[channel.value] = "off (set " + ", ".join(missing[channel]) + ")"
        else:
            routes[channel.value] = live[channel]
    return routes


@dataclass(frozen=True)
class _Kept:
    subject: str | None = None
    body_text: str = ""
    body_html: str | None = None
    sms_segments: int | None = None
    template_name: str | None = None
    template_language: str | None = None
    template_parameters: list[str] | None = None


class OutboxSender:
    """Renders one channel's messages and keeps them in `outbox_messages` (never sends)."""

    provider = PROVIDER

    def __init__(
        self,
        channel: str,
        *,
        whatsapp_template_name: str = "payment_recovery",
        whatsapp_languages: Mapping[str, str] | None = None,
    ) -> None:
        self.channel = channel
        self.whatsapp_template_name = whatsapp_template_name
        self.whatsapp_languages = dict(whatsapp_languages or {})

    @classmethod
    def from_settings(cls, channel: str, settings: Settings) -> OutboxSender:
        return cls(
            channel,
            whatsapp_template_name=settings.whatsapp_template_name,
            whatsapp_languages=settings.whatsapp_template_languages,
        )

    def render(self, message: MessageContext) -> _Kept:
        """What the provider would have been given; a `RenderError` like the real senders."""
        if message.channel == Channel.email:
            email = render_email(message)
            return _Kept(subject=email.subject, body_text=email.text, body_html=email.html)
        if message.channel == Channel.sms:
            text = render_sms(message)
            return _Kept(body_text=text, sms_segments=sms_segments(text))
        template = render_whatsapp(message)
        return _Kept(
            body_text=template.preview,
            template_name=self.whatsapp_template_name,
            template_language=self.whatsapp_languages.get(template.language, template.language),
            template_parameters=list(template.parameters),
        )

    async def send(self, message: MessageContext, handover: HandOver | None = None) -> str:
        """Keep the message; returns its outbox id (`outbox-N`) as the provider message id.

        `handover` runs right before the message is kept, as before a real provider call.
        """
        kept = self.render(message)
        if handover is not None:
            await handover()
        return await asyncio.to_thread(self._store, message, kept)

    def _store(self, message: MessageContext, kept: _Kept) -> str:
        row = OutboxMessage(
            organization_id=message.organization_id,
            log_id=message.log_id,
            attempt_id=message.attempt_id,
            channel=message.channel,
            recipient=message.recipient,
            subject=kept.subject,
            body_text=kept.body_text,
            body_html=kept.body_html,
            sms_segments=kept.sms_segments,
            template_name=kept.template_name,
            template_language=kept.template_language,
            template_parameters=kept.template_parameters,
        )
        try:
            with session_scope() as session:
                session.add(row)
                session.flush()
                return f"outbox-{row.id}"
        except IntegrityError:
            # The same log row taken again after a lease expired: it is already kept.
            with session_scope(write=False) as session:
                kept_id = session.scalar(
                    select(OutboxMessage.id).where(OutboxMessage.log_id == message.log_id)
                )
            if kept_id is None:
                raise
            return f"outbox-{kept_id}"

    async def aclose(self) -> None:
        return None
