"""Renders reminders from the Jinja2 templates under `templates/<language>/`.

One folder per language (`en`, `es`); the customer's locale picks the folder, falling back to
`en`. Amounts and dates are formatted with Babel for the customer's locale (or the template's
language when we have no template in the customer's language, so an English message never
carries Spanish number formatting). `StrictUndefined` turns a missing variable into an error at
render time, never a blank in a customer's message; HTML templates are autoescaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_skeleton, format_time
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from stealth_recovery.core.money import format_minor
from stealth_recovery.notifications.types import MessageContext

TEMPLATE_DIR = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"
SMS_MAX_CHARS = 320  # two concatenated GSM-7 segments (153 each) plus a little slack is 306-320

# The GSM 03.38 basic character set: an SMS written only with these is sent in 160-char
# segments instead of 70 (UCS-2), so the Spanish text avoids á/í/ó/ú.
GSM7_CHARACTERS = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "^{}\\[~]|€"
)

# Characters of the GSM 03.38 extension table: each takes two septets (an escape, then itself).
GSM7_EXTENSION = frozenset("^{}\\[~]|€")


def sms_segments(text: str) -> int:
    """How many SMS segments the carrier bills for `text`.

    GSM-7 text (3GPP TS 23.038, extension characters counting twice) fits 160 septets in one
    segment and 153 per segment when concatenated; anything else goes as UCS-2 (UTF-16 code
    units): 70 in one segment, 67 per concatenated segment. The same rule Twilio documents for
    its "segments" count.
    """
    if all(ch in GSM7_CHARACTERS for ch in text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    if units <= single:
        return 1
    return -(-units // part)


_environment = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


class RenderError(ValueError):
    """A template could not produce a message we are willing to send."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class WhatsAppTemplate:
    language: str  # template language code sent to the Cloud API
    parameters: tuple[str, str, str]  # body {{1}} amount, {{2}} merchant, {{3}} pay link
    preview: str  # the body text the customer sees, for logs and the report


@cache
def available_languages() -> frozenset[str]:
    return frozenset(p.name for p in TEMPLATE_DIR.iterdir() if p.is_dir() and p.name[0] != "_")


def choose_language(locale: str | None) -> str:
    """The template folder for a customer locale: "es-MX" → "es"; unknown → "en"."""
    if not locale:
        return DEFAULT_LANGUAGE
    language = locale.replace("-", "_").split("_", 1)[0].lower()
    return language if language in available_languages() else DEFAULT_LANGUAGE


def _format_locale(locale: str | None, language: str) -> Locale:
    """The customer's full locale when it speaks the template's language, else the language."""
    try:
        parsed = Locale.parse((locale or language).replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(language)
    return parsed if parsed.language == language else Locale.parse(language)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_expiry(expires_at: datetime, timezone: str | None, locale: Locale) -> str:
    """e.g. "December 5, 2026, 10:00 AM EST" / "5 de diciembre de 2026, 16:00 CET"."""
    zone = _zone(timezone)
    local = expires_at.astimezone(UTC).astimezone(zone)
    day = format_skeleton("yMMMMd", local, tzinfo=zone, locale=locale)
    time_of_day = format_time(local, "short", tzinfo=zone, locale=locale)
    zone_name = format_datetime(local, "z", tzinfo=zone, locale=locale)
    return f"{day}, {time_of_day} {zone_name}"


def _plain_spaces(text: str) -> str:
    # Babel uses no-break and narrow no-break spaces; they push an SMS out of GSM-7.
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def template_variables(message: MessageContext) -> dict[str, Any]:
    language = choose_language(message.locale)
    locale = _format_locale(message.locale, language)
    first_name = (message.customer_name or "").split()
    return {
        "language": language,
        "merchant_name": message.merchant_name,
        "customer_name": message.customer_name,
        "first_name": first_name[0] if first_name else None,
        "amount": format_minor(message.amount_minor, message.currency, locale),
        "pay_url": message.pay_url,
        "expires": format_expiry(message.expires_at, message.timezone, locale),
        "reminder_number": message.retry_number + 1,
        "max_reminders": message.max_retries,
        "is_last_reminder": message.retry_number + 1 >= message.max_retries,
        "decline_category": message.decline_category,
    }


def render(template: str, variables: dict[str, Any]) -> str:
    """Render one template file (path under templates/); a missing variable raises."""
    return _environment.get_template(template).render(**variables)


def render_email(message: MessageContext) -> RenderedEmail:
    variables = template_variables(message)
    language = variables["language"]
    subject = " ".join(render(f"{language}/email_subject.txt", variables).split())
    return RenderedEmail(
        subject=subject,
        text=render(f"{language}/email.txt", variables).strip() + "\n",
        html=render(f"{language}/email.html", variables),
    )


def render_sms(message: MessageContext) -> str:
    variables = template_variables(message)
    variables["amount"] = _plain_spaces(variables["amount"])
    variables["expires"] = _plain_spaces(variables["expires"])
    # One paragraph: the template's line breaks are for readability only.
    text = " ".join(render(f"{variables['language']}/sms.txt", variables).split())
    if len(text) > SMS_MAX_CHARS:
        raise RenderError(f"SMS is {len(text)} characters, more than {SMS_MAX_CHARS}")
    return text


def render_whatsapp(message: MessageContext) -> WhatsAppTemplate:
    variables = template_variables(message)
    parameters = (
        _plain_spaces(variables["amount"]),
        message.merchant_name,
        message.pay_url,
    )
    preview_variables = {
        **variables,
        "amount": parameters[0],
        "merchant_name": parameters[1],
        "pay_url": parameters[2],
    }
    preview = render(f"{variables['language']}/whatsapp.txt", preview_variables).strip()
    return WhatsAppTemplate(language=variables["language"], parameters=parameters, preview=preview)


def whatsapp_template_body(language: str) -> str:
    """The body to register with Meta for a language: the template with {{1}}, {{2}}, {{3}}."""
    return render(
        f"{language}/whatsapp.txt",
        {"amount": "{{1}}", "merchant_name": "{{2}}", "pay_url": "{{3}}"},
    ).strip()
