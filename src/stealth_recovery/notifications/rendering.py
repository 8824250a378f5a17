"""Renders reminders from the Jinja2 templates under `templates/<language>/`.

One folder per language (`en`, `es`); the customer's locale picks the folder, falling back to
`en`. Amounts and dates are formatted with Babel for the customer's locale (or the template's
language when we have no template in the customer's language, so an English message never
carries Spanish number formatting). `StrictUndefined` turns a missing variable into an error at
render time, never a blank in a customer's message; HTML templates are autoescaped.

A worker renders thousands of messages a second, nearly all alike: the fixed parts of a
template are rendered once per shape and kept (`_skeleton`), and each message only fills in its
own values. Every cache is keyed by the template set (`TemplateSet`), so templates that an
organization edits can be cached and invalidated apart from the ones shipped here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_skeleton, format_time
from jinja2 import Environment, FileSystemLoader, StrictUndefined, nodes, select_autoescape
from markupsafe import escape

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
    # The files ship with the code: compiled once, never checked for changes on disk (that
    # check is a stat() per message). A deploy restarts the workers.
    auto_reload=False,
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


@lru_cache(maxsize=256)
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
    """e.g. "December 5, 2026, 10:00 AM EST" / "5 de diciembre de 2026, 16:00 CET".

    Each of the three parts is formatted by Babel once per locale and value (the day, the
    minute of the day, the zone's name at that offset) and kept: Babel takes about 15 µs a part.
    """
    zone = _zone(timezone)
    local = expires_at.astimezone(UTC).astimezone(zone)
    day = _expiry_day(local.date(), str(locale))
    time_of_day = _expiry_time(local.hour, local.minute, str(locale))
    zone_name = _zone_name(zone.key, local.utcoffset(), local.tzname(), local, str(locale))
    return f"{day}, {time_of_day} {zone_name}"


@lru_cache(maxsize=4096)
def _expiry_day(day: date, locale: str) -> str:
    return format_skeleton("yMMMMd", day, locale=locale)


@lru_cache(maxsize=4096)
def _expiry_time(hour: int, minute: int, locale: str) -> str:
    # Only the hour and minute show: any day, read in UTC, gives the same text.
    moment = datetime(2000, 1, 1, hour, minute, tzinfo=UTC)
    return format_time(moment, "short", tzinfo=UTC, locale=locale)


def _zone_name(
    zone: str, offset: timedelta | None, abbreviation: str | None, local: datetime, locale: str
) -> str:
    # A zone's name depends on the zone and on which of its offsets applies (EST or EDT).
    key = (zone, offset, abbreviation, locale)
    name = _zone_names.get(key)
    if name is None:
        name = format_datetime(local, "z", tzinfo=local.tzinfo, locale=locale)
        if len(_zone_names) >= 4096:
            _zone_names.clear()
        _zone_names[key] = name
    return name


_zone_names: dict[tuple[str, timedelta | None, str | None, str], str] = {}


@lru_cache(maxsize=4096)
def _amount(amount_minor: int, currency: str, locale: Locale) -> str:
    # Kept: reminders of one plan's price repeat the same few amounts (Babel takes ~20 µs).
    return format_minor(amount_minor, currency, locale)


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
        "amount": _amount(message.amount_minor, message.currency, locale),
        "pay_url": message.pay_url,
        "expires": format_expiry(message.expires_at, message.timezone, locale),
        "reminder_number": message.retry_number + 1,
        "max_reminders": message.max_retries,
        "is_last_reminder": message.retry_number + 1 >= message.max_retries,
        "decline_category": message.decline_category,
    }


def render(template: str, variables: dict[str, Any]) -> str:
    """Render one template file (path under templates/); a missing variable raises.

    Through its cached skeleton (`_skeleton`) when the template allows it, else by Jinja.
    """
    return _render(template, variables, _shape(variables))


def _render(template: str, variables: dict[str, Any], shape: Shape | None) -> str:
    skeleton = None if shape is None else _skeleton(DEFAULT_TEMPLATES, template, shape)
    if skeleton is None:
        return _environment.get_template(template).render(**variables)
    return skeleton.fill(variables)


@dataclass(frozen=True)
class TemplateSet:
    """Which templates a message is rendered from, as the caches key them.

    Today one set, the files under templates/ (`DEFAULT_TEMPLATES`). Templates an organization
    edits would be a set of their own (its id and a version that changes with every edit):
    the caches keep each set's entries apart, and a new version is never served an old one's.
    """

    name: str
    version: int = 0


DEFAULT_TEMPLATES = TemplateSet("files")

# Variables that templates only print, or test for truth: a skeleton holds a placeholder for
# each (its value varies with every message). Any other variable picks a skeleton by its value
# (language, reminder number, decline category: a handful of shapes per template).
FILL_IN = frozenset(
    {"merchant_name", "customer_name", "first_name", "amount", "pay_url", "expires"}
)
_MARK = "\x00"  # around a placeholder's name in a skeleton (no template has one)


@dataclass(frozen=True)
class Skeleton:
    """A template rendered once for a shape: its fixed text with the fill-in values left out.

    `parts` alternates fixed text and the name of the variable printed there.
    """

    parts: tuple[str, ...]
    escaped: bool  # an autoescaped (HTML) template: values are escaped as Jinja would

    def fill(self, variables: dict[str, Any]) -> str:
        parts = self.parts
        if self.escaped:
            values = {name: str(escape(variables[name])) for name in set(parts[1::2])}
        else:
            values = {name: str(variables[name]) for name in set(parts[1::2])}
        out = list(parts)
        for i in range(1, len(parts), 2):
            out[i] = values[parts[i]]
        return "".join(out)


# A shape: every variable that is not a fill-in with its value, and every fill-in with its
# value when false (None, "") or True for "some text here". In the variables' order.
Shape = tuple[tuple[str, object], ...]


def _shape(variables: dict[str, Any]) -> Shape | None:
    shape = tuple(
        (name, (True if value else value) if name in FILL_IN else value)
        for name, value in variables.items()
    )
    try:
        hash(shape)
    except TypeError:
        return None  # a value that cannot key a cache: rendered by Jinja every time
    return shape


@lru_cache(maxsize=2048)
def _skeleton(templates: TemplateSet, template: str, shape: Shape) -> Skeleton | None:
    """`template` of `templates` rendered for `shape`; None when it cannot be made of
    placeholders (a template doing more with a fill-in than print or test it). Raises what
    rendering raises (a missing variable)."""
    if not _fill_ins_only_printed(templates, template):
        return None
    variables = {
        name: f"{_MARK}{name}{_MARK}" if value is True and name in FILL_IN else value
        for name, value in shape
    }
    text = _environment.get_template(template).render(**variables)
    parts = tuple(text.split(_MARK))
    # An odd count alternates text and names; anything else means a mark was cut up.
    if len(parts) % 2 == 0 or any(name not in FILL_IN for name in parts[1::2]):
        return None
    return Skeleton(parts, escaped=bool(_environment.autoescape(template)))  # type: ignore[operator]


def forget_templates() -> None:
    """Drop every cached skeleton and template check (the shipped files changed under a
    running process, as in tests). A set whose templates change gets a new
    `TemplateSet.version` instead: its old entries are never looked up again and age out."""
    _skeleton.cache_clear()
    _fill_ins_only_printed.cache_clear()


# Other templates pulled in, or escaping switched in the template: not worth following.
_NOT_FOLLOWED = (nodes.Include, nodes.Import, nodes.FromImport, nodes.EvalContextModifier)


@lru_cache(maxsize=512)
def _fill_ins_only_printed(templates: TemplateSet, template: str) -> bool:
    """Whether every use of a fill-in, in `template` and the layouts it extends, is a plain
    `{{ name }}` or a truth test (`{% if name %}`, `not name`, `and`/`or` inside a test)."""
    source, _, _ = _environment.loader.get_source(_environment, template)  # type: ignore[union-attr]
    tree = _environment.parse(source)
    if any(tree.find_all(_NOT_FOLLOWED)):
        return False
    for extends in tree.find_all(nodes.Extends):
        if not isinstance(extends.template, nodes.Const):
            return False
        if not _fill_ins_only_printed(templates, extends.template.value):
            return False
    return all(_allowed(node, parent, truth) for node, parent, truth in _walk(tree, None, False))


def _walk(
    node: nodes.Node, parent: nodes.Node | None, truth: bool
) -> Iterator[tuple[nodes.Node, nodes.Node | None, bool]]:
    yield node, parent, truth
    for child in node.iter_child_nodes():
        in_test = (isinstance(node, nodes.If | nodes.CondExpr) and child is node.test) or (
            truth and isinstance(node, nodes.Not | nodes.And | nodes.Or)
        )
        yield from _walk(child, node, in_test)


def _allowed(node: nodes.Node, parent: nodes.Node | None, truth: bool) -> bool:
    if not isinstance(node, nodes.Name) or node.name not in FILL_IN:
        return True
    if node.ctx != "load":
        return False  # a template assigning to a fill-in's name
    return truth or isinstance(parent, nodes.Output)


def render_email(message: MessageContext) -> RenderedEmail:
    variables = template_variables(message)
    language = variables["language"]
    shape = _shape(variables)
    subject = " ".join(_render(f"{language}/email_subject.txt", variables, shape).split())
    return RenderedEmail(
        subject=subject,
        text=_render(f"{language}/email.txt", variables, shape).strip() + "\n",
        html=_render(f"{language}/email.html", variables, shape),
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
