"""Stripe's amount units, and the conversion between them and ISO 4217 minor units.

Stripe counts most currencies in hundredths, whatever ISO 4217 says, and documents its
exceptions (https://docs.stripe.com/currencies, "Zero-decimal currencies", "Three-decimal
currencies" and "Special cases"):

| currency | ISO 4217 digits | Stripe digits | Stripe's rule |
| --- | --- | --- | --- |
| BIF CLP DJF GNF JPY KMF KRW PYG RWF VND VUV XAF XOF XPF | 0 | 0 | zero-decimal |
| MGA | 2 | 0 | zero-decimal |
| BHD JOD KWD OMR TND | 3 | 3 | last digit must be 0 (round to the nearest ten) |
| ISK, UGX | 0 | 2 | zero-decimal in fact, two-decimal in the API: multiples of 100 |
| HUF, TWD | 2 | 2 | two-decimal in charges (zero-decimal only for payouts) |
| every other currency | ISO | 2 | two-decimal |

Everything else in Stealth Recovery counts in ISO minor units (`core.money`); Stripe amounts are
converted here, on the way in (events) and out (Checkout).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from stealth_recovery.core.errors import DomainError
from stealth_recovery.core.money import minor_unit_digits

ZERO_DECIMAL: frozenset[str] = frozenset(
    {
        *("BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"),
        *("PYG", "RWF", "VND", "VUV", "XAF", "XOF", "XPF"),
    }
)
THREE_DECIMAL: frozenset[str] = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
# Whole units only, written with two decimals in the API (amount divisible by 100).
TWO_DECIMAL_WHOLE_UNITS: frozenset[str] = frozenset({"ISK", "UGX"})


class UnchargeableAmount(DomainError):
    """An amount Stripe cannot charge exactly in this currency."""

    status_code = 409
    type = "unchargeable_amount"


def stripe_digits(currency: str) -> int:
    """How many decimals Stripe's `amount` fields carry for this currency."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_stripe(amount_minor: int, currency: str) -> int:
    """ISO minor units → Stripe's `amount` (Checkout `unit_amount`, invoice amounts).

    Raises `UnchargeableAmount` when Stripe cannot charge the exact amount: a fraction of the
    unit Stripe charges in (MGA cents), or a three-decimal amount whose last digit is not 0.
    """
    code = currency.upper()
    shift = stripe_digits(code) - minor_unit_digits(code)
    if shift >= 0:
        amount = amount_minor * 10**shift
    else:
        amount, rest = divmod(amount_minor, 10**-shift)
        if rest:
            raise UnchargeableAmount(
                f"{code} is charged in whole units by Stripe; {amount_minor} minor units is not"
            )
    if code in THREE_DECIMAL and amount % 10:
        raise UnchargeableAmount(f"Stripe charges {code} in multiples of 10 minor units")
    return amount


def from_stripe(amount: int, currency: str) -> int:
    """Stripe's `amount` → ISO minor units (an event's invoice or payment intent amount).

    A fraction ISO cannot hold (ISK or UGX amounts from before they became whole units) is
    rounded half up to the nearest minor unit.
    """
    code = currency.upper()
    shift = minor_unit_digits(code) - stripe_digits(code)
    if shift >= 0:
        return amount * 10**shift
    return int((Decimal(amount).scaleb(shift)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
