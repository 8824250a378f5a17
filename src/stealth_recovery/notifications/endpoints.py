"""Delivery-status webhooks from Twilio and the WhatsApp Cloud API (thin: see service.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import PlainTextResponse

from stealth_recovery.core.api import load_json_document
from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications import delivery_status as service
from stealth_recovery.notifications.schemas import CallbackAck

router = APIRouter(prefix="/v1/webhooks", tags=["delivery status"])

_REFUSED: dict[int | str, dict[str, Any]] = {403: {"description": "signature does not verify"}}
# The handlers read the raw form / body themselves (signatures cover them byte for byte), so the
# request bodies are described here for the OpenAPI document.
_TWILIO_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "MessageSid": {"type": "string", "example": "SM" + "0" * 32},
                        "MessageStatus": {
                            "type": "string",
                            "enum": ["queued", "sent", "delivered", "undelivered", "failed"],
                        },
                        "ErrorCode": {"type": "string", "example": "30005"},
                    },
                    "required": ["MessageSid", "MessageStatus"],
                }
            }
        },
    }
}
_WHATSAPP_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "WhatsApp Business Account webhook (entry[].changes[].value"
                    ".statuses[] with id, status, timestamp, errors)",
                    "properties": {"object": {"type": "string"}, "entry": {"type": "array"}},
                }
            }
        },
    }
}


async def _form_pairs(request: Request) -> list[tuple[str, str]]:
    form = await request.form()
    return [(name, value) for name, value in form.multi_items() if isinstance(value, str)]


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@router.post("/twilio/status", responses=_REFUSED, openapi_extra=_TWILIO_BODY)
def twilio_status(
    request: Request,
    session: SessionDep,
    params: Annotated[list[tuple[str, str]], Depends(_form_pairs)],
    signature: Annotated[str | None, Header(alias="X-Twilio-Signature")] = None,
) -> CallbackAck:
    """Twilio's message status callback (the StatusCallback we give with every SMS).

    Verified with X-Twilio-Signature over BASE_URL + this path and the form; moves the log row
    to delivered / failed / bounced, never backwards. A status for a message not recorded yet
    (the callback beat Twilio's answer to us) is held and applied when the send is recorded.
    """
    settings = get_settings()
    url = settings.external_url(request.url.path)
    if request.url.query:
        url += "?" + request.url.query
    service.verify_twilio(settings=settings, url=url, params=params, signature=signature)
    event = service.twilio_event(dict(params))
    results = service.apply_events(session, events=[event] if event else [])
    return CallbackAck(results=[r.value for r in results])


@router.get(
    "/whatsapp",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "the hub.challenge, echoed",
            "content": {"text/plain": {"example": "1158201444"}},
        },
        **_REFUSED,
    },
)
def whatsapp_verify(
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    verify_token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> str:
    """Meta's subscription check: echoes hub.challenge when hub.verify_token matches."""
    return service.whatsapp_challenge(
        settings=get_settings(), mode=mode, verify_token=verify_token, challenge=challenge
    )


@router.post("/whatsapp", responses=_REFUSED, openapi_extra=_WHATSAPP_BODY)
def whatsapp_events(
    session: SessionDep,
    body: Annotated[bytes, Depends(_raw_body)],
    signature: Annotated[str | None, Header(alias="X-Hub-Signature-256")] = None,
) -> CallbackAck:
    """WhatsApp Business Account webhook: message statuses (sent, delivered, read, failed).

    Verified with X-Hub-Signature-256 over the raw body; each status moves its log row forward.
    A status for a message not recorded yet is held and applied when the send is recorded.
    """
    service.verify_whatsapp(settings=get_settings(), body=body, signature=signature)
    try:
        payload = load_json_document(body)
    except ValueError as exc:
        raise InvalidInput("body", f"must be JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise InvalidInput("body", "must be a JSON object")
    results = service.apply_events(session, events=service.whatsapp_events(payload))
    return CallbackAck(results=[r.value for r in results])
