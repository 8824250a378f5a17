"""WhatsApp reminders through the WhatsApp Cloud API (Graph API), over httpx.

Business-initiated conversations must use an approved template: `POST {graph}/{phone number
id}/messages` with a bearer token, `type: template`, the template name, the language and the
body parameters {{1}} amount, {{2}} merchant, {{3}} pay link. The reply's `messages[0].id`
(wamid...) is the provider message id that status webhooks refer to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stealth_recovery.core.settings import Settings, reveal
from stealth_recovery.notifications.error_codes import Refusal, whatsapp_error
from stealth_recovery.notifications.errors import PermanentSendError
from stealth_recovery.notifications.http_client import (
    PooledClient,
    is_transient_status,
    json_or_empty,
    post,
    transient_http_error,
)
from stealth_recovery.notifications.rendering import render_whatsapp
from stealth_recovery.notifications.types import HandOver, MessageContext


def missing_settings(settings: Settings) -> list[str]:
    names = {
        "WHATSAPP_API_KEY": settings.whatsapp_api_key,
        "WHATSAPP_BUSINESS_NUMBER": settings.whatsapp_business_number,
    }
    return [name for name, value in names.items() if not value]


class WhatsAppSender:
    provider = "whatsapp"

    def __init__(
        self,
        *,
        api_key: str,
        phone_number_id: str,
        api_base: str,
        template_name: str,
        client: PooledClient,
        language_codes: Mapping[str, str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.url = f"{api_base.rstrip('/')}/{phone_number_id}/messages"
        self.template_name = template_name
        self.language_codes = dict(language_codes or {})
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> WhatsAppSender:
        assert not missing_settings(settings), "check unavailable_reason() first"
        return cls(
            api_key=reveal(settings.whatsapp_api_key) or "",
            phone_number_id=settings.whatsapp_business_number or "",
            api_base=settings.whatsapp_api_base,
            template_name=settings.whatsapp_template_name,
            language_codes=settings.whatsapp_template_languages,
            client=PooledClient(
                timeout=settings.provider_http_timeout_seconds,
                max_connections=settings.send_concurrency,
            ),
        )

    def payload(self, message: MessageContext) -> dict[str, Any]:
        template = render_whatsapp(message)
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            # The Cloud API takes the number with its country code and without the "+".
            "to": message.recipient.lstrip("+"),
            "type": "template",
            "template": {
                "name": self.template_name,
                # Meta matches the code the template was approved under (`en` or `en_US`).
                "language": {"code": self.language_codes.get(template.language, template.language)},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": p} for p in template.parameters],
                    }
                ],
            },
        }

    async def send(self, message: MessageContext, handover: HandOver | None = None) -> str:
        """Send one template message; returns the wamid, raises a classified SendError.

        A refusal is classified by its Graph error code (`error_codes.WHATSAPP_ERRORS`, the
        table status webhooks use too): 131026 bounces the log, throttling and temporary
        service codes are retried even under HTTP 400; without a known code, 429 and 5xx are
        retried and anything else fails.
        The Cloud API takes no idempotency key: a lost answer is `AmbiguousSendError`.
        """
        response = await post(
            self.client,
            self.url,
            handover=handover,
            json=self.payload(message),
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        body = json_or_empty(response)
        if response.is_success:
            messages = body.get("messages")
            if isinstance(messages, list) and messages and isinstance(messages[0], dict):
                message_id = messages[0].get("id")
                if isinstance(message_id, str) and message_id:
                    return message_id
            raise PermanentSendError(
                f"WhatsApp answered {response.status_code} without a message id"
            )
        error_body = body.get("error")
        error = error_body if isinstance(error_body, dict) else {}
        code = error.get("code")
        text = f"WhatsApp {response.status_code}"
        if code is not None:
            text += f" (error {code})"
        text += f": {error.get('message') or response.reason_phrase}"
        details = error.get("error_data")
        if isinstance(details, dict) and details.get("details"):
            text += f" ({details['details']})"
        entry = whatsapp_error(code)
        if is_transient_status(response.status_code) or (
            entry is not None and entry.refusal == Refusal.transient
        ):
            raise transient_http_error(response, text)
        raise PermanentSendError(text, status=entry.refusal.value if entry else "failed")

    async def aclose(self) -> None:
        await self.client.aclose()
