"""Amounts in Stripe's units: every currency Stripe lists reads, for the customer, exactly what
Stripe charges — events in, Checkout out."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from babel.numbers import parse_decimal
from hypothesis import given, settings
from hypothesis import strategies as st

from stealth_recovery.core.money import format_minor, minor_unit_digits
from stealth_recovery.ingestion.service import normalise_currency
from stealth_recovery.integrations.stripe.currencies import (
    THREE_DECIMAL,
    TWO_DECIMAL_WHOLE_UNITS,
    ZERO_DECIMAL,
    UnchargeableAmount,
    from_stripe,
    stripe_digits,
    to_stripe,
)

# Stripe's presentment currencies (docs.stripe.com/currencies, "Supported presentment
# currencies"), lowercase as Stripe writes them.
STRIPE_CURRENCIES = """
usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp
byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip
gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt
lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr
nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd
std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar
zmw
""".split()  # noqa: SIM905 -- the docs' list, kept as it reads there


def _accepted(code: str) -> bool:
    try:
        normalise_currency(code)
    except ValueError:
        return False
    return True


CURRENCIES = [c.upper() for c in STRIPE_CURRENCIES if _accepted(c)]


def _read(displayed: str) -> Decimal:
    """The number a customer reads in an English-formatted amount."""
    return parse_decimal(re.sub(r"[^\d.,]", "", displayed), locale="en")


def _charged(amount: int, currency: str) -> Decimal:
    """What Stripe charges for an `amount` in its units."""
    return Decimal(amount).scaleb(-stripe_digits(currency))


def test_nearly_every_stripe_currency_is_accepted_by_the_api() -> None:
    refused = sorted(set(c.upper() for c in STRIPE_CURRENCIES) - set(CURRENCIES))
    assert refused == []


@settings(max_examples=400, deadline=None)
@given(currency=st.sampled_from(CURRENCIES), units=st.integers(min_value=1, max_value=10**9))
def test_what_the_customer_reads_is_what_checkout_charges(currency: str, units: int) -> None:
    # Given an amount Stripe can charge in this currency, in ISO minor units
    step = 10 ** max(0, minor_unit_digits(currency) - stripe_digits(currency))
    if currency in THREE_DECIMAL:
        step = 10
    amount_minor = units * step
    # When it goes out to Checkout
    sent = to_stripe(amount_minor, currency)
    # Then the customer's message reads exactly what Stripe charges
    assert _read(format_minor(amount_minor, currency, "en")) == _charged(sent, currency)
    assert from_stripe(sent, currency) == amount_minor


@settings(max_examples=400, deadline=None)
@given(currency=st.sampled_from(CURRENCIES), units=st.integers(min_value=1, max_value=10**9))
def test_what_stripe_reports_is_what_the_customer_reads(currency: str, units: int) -> None:
    # Given an amount as a Stripe event reports it (whole units where Stripe requires them)
    amount = units * (100 if currency in TWO_DECIMAL_WHOLE_UNITS else 1)
    # When it comes in
    amount_minor = from_stripe(amount, currency)
    # Then the reminder reads what Stripe said was owed
    assert _read(format_minor(amount_minor, currency, "en")) == _charged(amount, currency)


@pytest.mark.parametrize(
    ("currency", "amount_minor", "stripe_amount", "reads"),
    [
        ("EUR", 4999, 4999, "€49.99"),
        ("JPY", 500, 500, "¥500"),
        ("HUF", 1299000, 1299000, "HUF12,990.00"),
        ("TWD", 12345, 12345, "NT$123.45"),
        ("ISK", 500, 50000, "ISK500"),
        ("UGX", 5000, 500000, "UGX5,000"),
        ("KWD", 5120, 5120, "KWD5.120"),
        ("MGA", 150000, 1500, "MGA1,500.00"),
    ],
)
def test_the_documented_rules(
    currency: str, amount_minor: int, stripe_amount: int, reads: str
) -> None:
    assert to_stripe(amount_minor, currency) == stripe_amount
    assert from_stripe(stripe_amount, currency) == amount_minor
    assert format_minor(amount_minor, currency, "en") == reads


@pytest.mark.parametrize(("currency", "amount_minor"), [("KWD", 5124), ("MGA", 150050)])
def test_an_amount_stripe_cannot_charge_exactly_is_refused(
    currency: str, amount_minor: int
) -> None:
    with pytest.raises(UnchargeableAmount):
        to_stripe(amount_minor, currency)


def test_the_tables_do_not_overlap() -> None:
    assert not (ZERO_DECIMAL & THREE_DECIMAL)
    assert not ((ZERO_DECIMAL | THREE_DECIMAL) & TWO_DECIMAL_WHOLE_UNITS)
