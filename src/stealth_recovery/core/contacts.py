"""Customer contact details in one canonical form: checked email addresses, E.164 numbers."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import available_timezones

import phonenumbers
import phonenumbers.timezone
from babel import Locale, UnknownLocaleError
from email_validator import EmailNotValidError, validate_email


def normalise_email(value: str) -> str:
    """A syntactically valid address: the local part as given, the domain lower-cased (and an
    internationalised one in Unicode form, e.g. `müller-shop.example`); ValueError naming the
    rule otherwise.

    The local part keeps its case and any `+tag`: only the receiving host may interpret it
    (RFC 5321 §2.4), and the customer's own spelling is what the log shows.
    """
    candidate = value.strip()
    if not candidate:
        raise ValueError("must not be empty")
    try:
        # No DNS lookup: ingestion must not depend on the network or slow resolvers.
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address ({exc})") from None
    return result.normalized


def normalise_phone(value: str, default_region: str | None = None) -> str:
    """The number in E.164 (+4915112345678); ValueError naming the rule otherwise.

    Without a leading + the number is read in `default_region` (ISO 3166 alpha-2, e.g. "DE").
    """
    candidate = value.strip()
    if not candidate:
        raise ValueError("must not be empty")
    region = default_region.upper() if default_region else None
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        if not candidate.startswith("+") and region is None:
            raise ValueError(
                "must be in international format starting with + and the country code"
            ) from None
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# The customer's country and time zone, for send windows and holidays (`recovery.windows`).


@lru_cache(maxsize=4096)
def phone_country(phone: str | None) -> str | None:
    """The ISO 3166 country of an E.164 number (`+4915…` → "DE"), None if unknown."""
    if not phone:
        return None
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone))
    except phonenumbers.NumberParseException:
        return None
    return region if region and region != "001" else None


@lru_cache(maxsize=1024)
def locale_country(locale: str | None) -> str | None:
    """The country of a locale (`de_DE` → "DE"), None for a bare language (`de`)."""
    if not locale:
        return None
    try:
        territory = Locale.parse(locale.replace("-", "_")).territory
    except (UnknownLocaleError, ValueError, TypeError):
        return None
    return territory or None


def customer_country(phone: str | None, locale: str | None) -> str | None:
    """Where the customer lives, for public holidays: the phone number's country, else the
    locale's, else None (no holiday is known)."""
    return phone_country(phone) or locale_country(locale)


def _known_zones(names: tuple[str, ...]) -> list[str]:
    return sorted(name for name in names if name in _available_zones())


@lru_cache(maxsize=1)
def _available_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=512)
def country_zone(country: str) -> str | None:
    """A country's reference zone: the one of its example mobile number (for a country
    spanning several zones, phonenumbers' example sits in its capital's or largest region:
    US → America/New_York, AU → Australia/Sydney, RU → Europe/Moscow), alphabetically first
    when that number has several. None for a country phonenumbers does not know."""
    example = phonenumbers.example_number_for_type(
        country.upper(), phonenumbers.PhoneNumberType.MOBILE
    )
    if example is None:
        return None
    zones = _known_zones(phonenumbers.timezone.time_zones_for_geographical_number(example))
    return zones[0] if zones else None


@lru_cache(maxsize=4096)
def phone_zone(phone: str | None) -> str | None:
    """The time zone of an E.164 number. A number of one zone gives it; a number that may be
    in several (a mobile in a country of many zones) gives its country's reference zone
    (`country_zone`) when among them, else the alphabetically first: the same answer always."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None
    zones = _known_zones(phonenumbers.timezone.time_zones_for_number(number))
    if len(zones) <= 1:
        return zones[0] if zones else None
    reference = country_zone(phone_country(phone) or "")
    return reference if reference in zones else zones[0]


def customer_zone(given: str | None, *, phone: str | None, locale: str | None) -> str:
    """The customer's IANA time zone: `given` (the report's `customer_timezone`, checked by
    the caller), else the phone number's (`phone_zone`), else the reference zone of the
    locale's country (`country_zone`), else UTC."""
    if given:
        return given
    country = locale_country(locale)
    return phone_zone(phone) or (country_zone(country) if country else None) or "UTC"
