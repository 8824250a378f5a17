from __future__ import annotations

import pytest

from stealth_recovery.core.contacts import (
    customer_country,
    customer_zone,
    normalise_email,
    normalise_phone,
    phone_zone,
)


class TestNormaliseEmail:
    def test_trims_and_lower_cases_the_domain_only(self) -> None:
        assert normalise_email("  Jane.Doe+billing@Example.COM ") == "Jane.Doe+billing@example.com"

    def test_keeps_an_internationalised_domain_in_unicode(self) -> None:
        assert normalise_email("kunde@XN--MLLER-SHOP-9DB.example") == "kunde@müller-shop.example"
        assert normalise_email("jörg@example.de") == "jörg@example.de"

    @pytest.mark.parametrize("value", ["", "   ", "jane", "jane@", "@example.com", "a b@c.com"])
    def test_rejects_what_is_not_an_address(self, value: str) -> None:
        with pytest.raises(ValueError):
            normalise_email(value)


class TestNormalisePhone:
    def test_international_number_becomes_e164(self) -> None:
        assert normalise_phone("+49 (151) 234-56789") == "+4915123456789"

    def test_national_number_is_read_in_the_default_region(self) -> None:
        assert normalise_phone("0151 23456789", default_region="de") == "+4915123456789"

    def test_national_number_without_region_asks_for_the_country_code(self) -> None:
        with pytest.raises(ValueError, match="international format"):
            normalise_phone("0151 23456789")

    @pytest.mark.parametrize("value", ["", "+1 555", "+49 12", "hello"])
    def test_rejects_invalid_numbers(self, value: str) -> None:
        with pytest.raises(ValueError):
            normalise_phone(value, default_region="US")


class TestCustomerPlace:
    @pytest.mark.parametrize(
        ("phone", "locale", "country"),
        [
            ("+4915123456789", "en_US", "DE"),
            (None, "de_AT", "AT"),
            (None, "de", None),
            (None, None, None),
        ],
    )
    def test_country_is_the_phones_else_the_locales(
        self, phone: str | None, locale: str | None, country: str | None
    ) -> None:
        assert customer_country(phone, locale) == country

    def test_a_number_of_one_zone_gives_it(self) -> None:
        assert phone_zone("+12125550123") == "America/New_York"
        assert phone_zone("+33612345678") == "Europe/Paris"

    def test_a_number_of_several_zones_gives_the_same_one_always(self) -> None:
        # An Australian mobile may be anywhere from Perth to Lord Howe: Sydney, the reference
        assert phone_zone("+61412345678") == "Australia/Sydney"

    def test_given_zone_wins_then_phone_then_locale_then_utc(self) -> None:
        assert customer_zone("Asia/Tokyo", phone="+4915123456789", locale="en_US") == "Asia/Tokyo"
        assert customer_zone(None, phone="+4915123456789", locale="en_US") == "Europe/Berlin"
        assert customer_zone(None, phone=None, locale="en_US") == "America/New_York"
        assert customer_zone(None, phone=None, locale="en") == "UTC"
