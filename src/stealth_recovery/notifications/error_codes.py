"""What each provider error code means for our log: one table per provider, for both paths.

A provider can refuse a message when we send it (HTTP 4xx with an error code) or report the
same code later in a delivery-status callback. Both paths look the code up here, so a number
that cannot receive is `bounced` whichever way the news arrives.

- `bounced`: the recipient's number or account cannot receive our messages (invalid, not a
  mobile, opted out, not on WhatsApp). Sending again will not help.
- `failed`: this message failed for a reason on our side or the provider's (configuration,
  template, policy, filtering, unknown). A later reminder may still get through.
- `transient`: "not now" (rate limits, temporary outages). At send time it is retried within
  the step; in a callback the message itself is over, so it is recorded `failed`.

Sources: Twilio's error dictionary, https://www.twilio.com/docs/api/errors/{code}, and Meta's
WhatsApp Cloud API error codes,
https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Refusal(StrEnum):
    bounced = "bounced"
    failed = "failed"
    transient = "transient"


@dataclass(frozen=True)
class ErrorCode:
    refusal: Refusal
    meaning: str


_B, _F, _T = Refusal.bounced, Refusal.failed, Refusal.transient

TWILIO_ERRORS: dict[int, ErrorCode] = {
    # The number cannot receive SMS: at create time (21xxx) or from the carrier (30xxx).
    21211: ErrorCode(_B, "invalid 'To' phone number"),
    21407: ErrorCode(_B, "this phone number type does not support SMS"),
    21610: ErrorCode(_B, "recipient unsubscribed (replied STOP)"),
    21612: ErrorCode(_B, "'To' number is not currently reachable via SMS"),
    21614: ErrorCode(_B, "'To' number is not a valid mobile number"),
    21635: ErrorCode(_B, "'To' number cannot be a landline"),
    30005: ErrorCode(_B, "unknown destination handset"),
    30006: ErrorCode(_B, "landline or unreachable carrier"),
    # This message failed; the number may still receive a later one.
    20003: ErrorCode(_F, "authentication failed (account SID / auth token)"),
    21212: ErrorCode(_F, "invalid 'From' number"),
    21408: ErrorCode(_F, "sending to this region is not enabled on the account"),
    21602: ErrorCode(_F, "message body is required"),
    21604: ErrorCode(_F, "'To' number is required"),
    21606: ErrorCode(_F, "'From' number cannot send SMS"),
    21608: ErrorCode(_F, "'To' number not verified on a trial account"),
    21617: ErrorCode(_F, "message body exceeds 1600 characters"),
    30002: ErrorCode(_F, "account suspended"),
    30003: ErrorCode(_F, "unreachable destination handset"),
    30004: ErrorCode(_F, "message blocked"),
    30007: ErrorCode(_F, "message filtered by the carrier"),
    30008: ErrorCode(_F, "unknown error"),
    30032: ErrorCode(_F, "toll-free number not verified"),
    30034: ErrorCode(_F, "sender not registered (A2P 10DLC)"),
    # Not now.
    20429: ErrorCode(_T, "too many requests"),
    30001: ErrorCode(_T, "queue overflow"),
    30410: ErrorCode(_T, "provider timeout"),
}

WHATSAPP_ERRORS: dict[int, ErrorCode] = {
    # The recipient cannot receive business messages.
    131026: ErrorCode(_B, "message undeliverable (not on WhatsApp, or cannot receive it)"),
    131050: ErrorCode(_B, "recipient stopped marketing messages"),
    # This message failed.
    10: ErrorCode(_F, "permission denied"),
    100: ErrorCode(_F, "invalid parameter"),
    190: ErrorCode(_F, "access token expired or invalid"),
    200: ErrorCode(_F, "permission not granted"),
    368: ErrorCode(_F, "temporarily blocked for policy violations"),
    130472: ErrorCode(_F, "recipient's number is part of an experiment"),
    131008: ErrorCode(_F, "required parameter missing"),
    131009: ErrorCode(_F, "parameter value not valid"),
    131021: ErrorCode(_F, "recipient cannot be the sender"),
    131031: ErrorCode(_F, "business account locked"),
    131042: ErrorCode(_F, "business eligibility payment issue"),
    131045: ErrorCode(_F, "phone number not registered (certificate)"),
    131047: ErrorCode(_F, "re-engagement message outside the 24-hour window"),
    131049: ErrorCode(_F, "not delivered to maintain healthy ecosystem engagement"),
    131051: ErrorCode(_F, "unsupported message type"),
    132000: ErrorCode(_F, "template parameter count mismatch"),
    132001: ErrorCode(_F, "template does not exist in this language"),
    132005: ErrorCode(_F, "template text too long"),
    132007: ErrorCode(_F, "template format character policy violated"),
    132012: ErrorCode(_F, "template parameter format mismatch"),
    132015: ErrorCode(_F, "template paused"),
    132016: ErrorCode(_F, "template disabled"),
    133010: ErrorCode(_F, "business phone number not registered"),
    # Not now: throttling and temporary service errors.
    1: ErrorCode(_T, "API unknown error"),
    2: ErrorCode(_T, "API service temporarily unavailable"),
    4: ErrorCode(_T, "too many API calls"),
    80007: ErrorCode(_T, "rate limit issues"),
    130429: ErrorCode(_T, "throughput rate limit hit"),
    131000: ErrorCode(_T, "something went wrong"),
    131016: ErrorCode(_T, "service unavailable"),
    131048: ErrorCode(_T, "spam rate limit hit"),
    131056: ErrorCode(_T, "pair rate limit hit (same recipient)"),
    133004: ErrorCode(_T, "server temporarily unavailable"),
}


def _lookup(table: dict[int, ErrorCode], code: object) -> ErrorCode | None:
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return table.get(code)
    if isinstance(code, str) and code.strip().isdigit():
        return table.get(int(code))
    return None


def twilio_error(code: object) -> ErrorCode | None:
    """The Twilio table's entry for `code` (an int, or digits as a callback's ErrorCode)."""
    return _lookup(TWILIO_ERRORS, code)


def whatsapp_error(code: object) -> ErrorCode | None:
    """The WhatsApp Cloud API table's entry for `code` (int or digits)."""
    return _lookup(WHATSAPP_ERRORS, code)


def callback_status(entry: ErrorCode | None) -> str:
    """The final log status a failed-delivery callback with this code means."""
    return Refusal.bounced.value if entry and entry.refusal == Refusal.bounced else "failed"
