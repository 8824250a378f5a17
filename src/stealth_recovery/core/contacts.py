"""Customer contact details in one canonical form: checked email addresses, E.164 numbers."""

from __future__ import annotations

import phonenumbers
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
