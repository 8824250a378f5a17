"""SMS through Twilio's Programmable Messaging REST API, over httpx.

`POST {api}/2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP basic auth (account SID,
auth token) and the form fields To, From, Body and StatusCallback; the reply's `sid` (SM...) is
the provider message id that delivery-status callbacks refer to. See docs/architecture.md for
why this is httpx and not the `twilio` SDK.
"""

from __future__ import annotations

from stealth_recovery.core.settings import Settings, reveal
from stealth_recovery.notifications.error_codes import Refusal, twilio_error
from stealth_recovery.notifications.errors import PermanentSendError
from stealth_recovery.notifications.http_client import (
    PooledClient,
    is_transient_status,
    json_or_empty,
    post,
    transient_http_error,
)
from stealth_recovery.notifications.rendering import render_sms
from stealth_recovery.notifications.types import HandOver, MessageContext

STATUS_CALLBACK_PATH = "/v1/webhooks/twilio/status"


def missing_settings(settings: Settings) -> list[str]:
    names = {
        "TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
        "TWILIO_FROM_NUMBER": settings.twilio_from_number,
    }
    return [name for name, value in names.items() if not value]


def status_callback_url(settings: Settings) -> str:
    return settings.external_url(STATUS_CALLBACK_PATH)


class TwilioSmsSender:
    provider = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base: str,
        status_callback: str | None,
        client: PooledClient,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.url = f"{api_base.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.status_callback = status_callback
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioSmsSender:
        assert not missing_settings(settings), "check unavailable_reason() first"
        return cls(
            account_sid=settings.twilio_account_sid or "",
            auth_token=reveal(settings.twilio_auth_token) or "",
            from_number=settings.twilio_from_number or "",
            api_base=settings.twilio_api_base,
            status_callback=status_callback_url(settings),
            client=PooledClient(
                timeout=settings.provider_http_timeout_seconds,
                max_connections=settings.send_concurrency,
            ),
        )

    async def send(self, message: MessageContext, handover: HandOver | None = None) -> str:
        """Send one SMS; returns the Message SID, raises a classified SendError.

        A refusal is classified by its Twilio error code (`error_codes.TWILIO_ERRORS`, the
        table callbacks use too): 21610 or 21211 bounce the log, a throttling code is retried;
        without a known code, 429 and 5xx are retried and anything else fails.
        The Messages API takes no idempotency key, so a request whose answer is lost is
        `AmbiguousSendError` (recorded unconfirmed), never sent again.
        """
        form = {"To": message.recipient, "From": self.from_number, "Body": render_sms(message)}
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        response = await post(
            self.client,
            self.url,
            handover=handover,
            data=form,
            auth=(self.account_sid, self.auth_token),
        )
        body = json_or_empty(response)
        if response.is_success:
            sid = body.get("sid")
            if not isinstance(sid, str) or not sid:
                raise PermanentSendError(f"Twilio answered {response.status_code} without a sid")
            return sid
        error = f"Twilio {response.status_code}"
        if body.get("code") is not None:
            error += f" (error {body['code']})"
        error += f": {body.get('message') or response.reason_phrase}"
        if is_transient_status(response.status_code):
            raise transient_http_error(response, error)
        entry = twilio_error(body.get("code"))
        if entry is not None and entry.refusal == Refusal.transient:
            raise transient_http_error(response, error)
        raise PermanentSendError(error, status=entry.refusal.value if entry else "failed")

    async def aclose(self) -> None:
        await self.client.aclose()
