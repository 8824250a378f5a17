"""How an amount reads: the learnt formats write exactly what Babel writes."""

from __future__ import annotations

from babel import Locale
from babel.numbers import parse_pattern
from hypothesis import given, settings
from hypothesis import strategies as st

from stealth_recovery.core.money import format_minor, minor_unit_digits, to_major

LOCALES = ["en", "en_IN", "de", "de_CH", "fr", "fr_CH", "es", "pl", "pt_BR", "ja", "ar", "hi", "sv"]
CURRENCIES = ["EUR", "USD", "JPY", "KWD", "HUF", "INR", "CHF", "BRL", "SEK", "CLF"]


def _babel(amount_minor: int, currency: str, locale: str) -> str:
    """Babel's own text: the locale's currency pattern with the ISO minor unit's digits."""
    parsed = Locale.parse(locale)
    pattern = parse_pattern(parsed.currency_formats["standard"])
    digits = minor_unit_digits(currency)
    pattern.frac_prec = (digits, digits)
    return pattern.apply(
        to_major(amount_minor, currency), parsed, currency=currency, currency_digits=False
    )


class TestFormatMinor:
    @settings(max_examples=600, deadline=None)
    @given(
        locale=st.sampled_from(LOCALES),
        currency=st.sampled_from(CURRENCIES),
        amount_minor=st.one_of(
            st.integers(min_value=0, max_value=10**6),
            st.integers(min_value=-(10**9), max_value=10**16),
        ),
    )
    def test_reads_as_babel_writes_it(self, locale: str, currency: str, amount_minor: int) -> None:
        # Given any amount, in any currency and locale
        # When it is formatted for a message
        text = format_minor(amount_minor, currency, locale)
        # Then it is exactly Babel's text, however often the pair was formatted before
        assert text == _babel(amount_minor, currency, locale)
        assert format_minor(amount_minor, currency, Locale.parse(locale)) == text

    def test_groups_digits_as_each_locale_does(self) -> None:
        # Given one large amount
        amount_minor = 1234567890
        # When it is written in English, Indian English and German
        # Then each locale's group sizes and symbols apply
        assert format_minor(amount_minor, "EUR", "en") == "€12,345,678.90"
        assert format_minor(amount_minor, "INR", "en_IN") == "₹1,23,45,678.90"
        assert format_minor(amount_minor, "EUR", "de") == "12.345.678,90\u00a0€"

    def test_a_negative_amount_keeps_babels_sign(self) -> None:
        # Given a negative amount (a refund shown somewhere)
        # When it is formatted
        # Then Babel writes it, sign and all
        assert format_minor(-4999, "EUR", "en") == "-€49.99"
