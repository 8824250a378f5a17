"""Amounts in ISO 4217 minor units: how many digits a currency's minor unit has, and how an
amount reads for a customer. One unit everywhere in the API: `amount_minor`.

The digits are ISO 4217's (the `iso4217` package), not CLDR's: Babel's `get_currency_precision`
gives the digits people usually write (HUF and TWD with none), which differ from the unit
amounts are counted in. Providers with their own rules convert at their boundary
(`integrations/stripe/currencies.py`).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from functools import cache, lru_cache

from babel import Locale
from babel.numbers import NumberPattern, get_currency_precision, parse_pattern
from iso4217 import Currency

# Codes withdrawn from ISO 4217's current list that providers still accept, with their minor
# unit from ISO 4217's list of historic denominations (CLDR says 0 for STD).
_WITHDRAWN = {"STD": 2, "ANG": 2}


@cache
def _iso_exponents() -> dict[str, int]:
    return {**_WITHDRAWN, **{c.code: c.exponent for c in Currency if c.exponent is not None}}


def minor_unit_digits(currency: str) -> int:
    """Digits of the currency's ISO 4217 minor unit (EUR 2, JPY 0, HUF 2, KWD 3). Other codes
    Babel knows fall back to CLDR's digits."""
    code = currency.upper()
    found = _iso_exponents().get(code)
    return found if found is not None else get_currency_precision(code)


def to_major(amount_minor: int, currency: str) -> Decimal:
    """The amount in major units, exactly (4999 EUR minor → Decimal("49.99"))."""
    return Decimal(amount_minor).scaleb(-minor_unit_digits(currency))


@lru_cache(maxsize=512)
def _currency_pattern(locale: Locale, currency: str) -> NumberPattern:
    """The locale's currency format with exactly the ISO minor unit's digits."""
    pattern = copy.copy(parse_pattern(locale.currency_formats["standard"]))
    digits = minor_unit_digits(currency)
    pattern.frac_prec = (digits, digits)
    return pattern


def format_minor(amount_minor: int, currency: str, locale: Locale | str) -> str:
    """The amount as the customer reads it, in the locale's currency format, with exactly the
    ISO minor unit's digits (HUF 1299000 → "HUF12,990.00" in English)."""
    parsed = Locale.parse(locale) if isinstance(locale, str) else locale
    return _currency_pattern(parsed, currency).apply(
        to_major(amount_minor, currency), parsed, currency=currency.upper(), currency_digits=False
    )
