"""Amounts in ISO 4217 minor units: how many digits a currency's minor unit has, and how an
amount reads for a customer. One unit everywhere in the API: `amount_minor`.

The digits are ISO 4217's (the `iso4217` package), not CLDR's: Babel's `get_currency_precision`
gives the digits people usually write (HUF and TWD with none), which differ from the unit
amounts are counted in. Providers with their own rules convert at their boundary
(`integrations/stripe/currencies.py`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cache, lru_cache

from babel import Locale
from babel.numbers import (
    NumberPattern,
    get_currency_precision,
    get_decimal_symbol,
    get_group_symbol,
    parse_pattern,
)
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
    ISO minor unit's digits (HUF 1299000 → "HUF12,990.00" in English).

    Babel's text, through `_fast_format` when it has learnt the (locale, currency) pair.
    """
    parsed = Locale.parse(locale) if isinstance(locale, str) else locale
    fast = _fast_format(parsed, currency) if amount_minor >= 0 else None
    if fast is not None:
        return fast.format(amount_minor)
    return _babel_format(amount_minor, currency, parsed)


def _babel_format(amount_minor: int, currency: str, locale: Locale) -> str:
    return _currency_pattern(locale, currency).apply(
        to_major(amount_minor, currency), locale, currency=currency.upper(), currency_digits=False
    )


@dataclass(frozen=True, slots=True)
class _AmountFormat:
    """How a locale writes a currency's amounts: text before and after the number, the group
    and decimal symbols, the group sizes (primary, then the others), the minor unit's digits."""

    prefix: str
    suffix: str
    group: str
    decimal: str
    sizes: tuple[int, int]
    digits: int

    def format(self, amount_minor: int) -> str:
        """A non-negative amount; about a tenth of Babel's time (`NumberPattern.apply`)."""
        whole, fraction = divmod(amount_minor, 10**self.digits)
        text, size, groups = str(whole), self.sizes[0], ""
        while len(text) > size:
            groups = f"{self.group}{text[-size:]}{groups}"
            text, size = text[:-size], self.sizes[1]
        number = text + groups
        if self.digits:
            number = f"{number}{self.decimal}{fraction:0{self.digits}d}"
        return f"{self.prefix}{number}{self.suffix}"


# Amounts (in minor units) every learnt format must write exactly as Babel does: zero, below one
# unit, group boundaries, a long number. A pair that fails any is always left to Babel.
_PROBES = (0, 1, 7, 99, 100, 999, 1001, 12345, 99999, 100000, 123456, 1234567, 12345678901234)


@lru_cache(maxsize=512)
def _fast_format(locale: Locale, currency: str) -> _AmountFormat | None:
    """The pair's format, learnt from Babel's own text and checked against it on `_PROBES`;
    None when it does not match (a pattern with plural names or minimum grouping digits, say):
    such a pair is formatted by Babel every time."""
    pattern = _currency_pattern(locale, currency)
    if "¤¤¤" in pattern.pattern or len(pattern.grouping) != 2:
        return None
    shape = _AmountFormat(
        prefix="",
        suffix="",
        group=get_group_symbol(locale),
        decimal=get_decimal_symbol(locale),
        sizes=(int(pattern.grouping[0]), int(pattern.grouping[1])),
        digits=minor_unit_digits(currency),
    )
    sample = _PROBES[-1]
    prefix, found, suffix = _babel_format(sample, currency, locale).partition(shape.format(sample))
    if not found:
        return None
    learnt = replace(shape, prefix=prefix, suffix=suffix)
    if any(learnt.format(m) != _babel_format(m, currency, locale) for m in _PROBES):
        return None
    return learnt
