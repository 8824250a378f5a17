from __future__ import annotations

import pytest

from stealth_recovery.core.contacts import normalise_email, normalise_phone


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
