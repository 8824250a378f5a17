from __future__ import annotations

import pytest

from stealth_recovery.payments.declines import DECLINE_TABLE, DeclineCategory, classify_decline


class TestClassifyDecline:
    @pytest.mark.parametrize(
        "code",
        [
            "insufficient_funds",
            "processing_error",
            "try_again_later",
            "generic_decline",
            "do_not_honor",
        ],
    )
    def test_temporary_declines_are_soft(self, code: str) -> None:
        assert classify_decline(code) == DeclineCategory.soft

    @pytest.mark.parametrize(
        "code",
        [
            "expired_card",
            "incorrect_cvc",
            "incorrect_number",
            "authentication_required",
            "card_not_supported",
        ],
    )
    def test_card_problems_need_the_customer(self, code: str) -> None:
        assert classify_decline(code) == DeclineCategory.customer_action

    @pytest.mark.parametrize(
        "code",
        [
            "stolen_card",
            "lost_card",
            "fraudulent",
            "pickup_card",
            "restricted_card",
            "merchant_blacklist",
        ],
    )
    def test_fraud_and_blocked_cards_are_hard(self, code: str) -> None:
        assert classify_decline(code) == DeclineCategory.hard

    @pytest.mark.parametrize("code", [None, "", "something_new_from_the_issuer"])
    def test_missing_or_unknown_codes_are_soft(self, code: str | None) -> None:
        assert classify_decline(code) == DeclineCategory.soft

    def test_codes_are_matched_regardless_of_case_and_spaces(self) -> None:
        assert classify_decline("  Stolen_Card ") == DeclineCategory.hard

    def test_every_code_has_exactly_one_category(self) -> None:
        # Given the table built from three lists, a code listed twice would silently win once.
        from stealth_recovery.payments import declines

        listed = [*declines._SOFT, *declines._CUSTOMER_ACTION, *declines._HARD]
        assert len(listed) == len(set(listed)) == len(DECLINE_TABLE)
