from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.core.time import utc_now
from stealth_recovery.ingestion.service import (
    FailureInput,
    Ingested,
    default_idempotency_key,
    record_failure,
)
from stealth_recovery.payments.declines import DeclineCategory
from stealth_recovery.payments.models import FailureEvent, Transaction
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt
from stealth_recovery.recovery.service import complete_attempt
from stealth_recovery.retry.policy import create_policy
from tests.support.builders import failure_input, make_account


def _count(db: Session, model: type) -> int:
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


class TestRecordFailure:
    def test_stores_transaction_failure_and_opens_attempt(self, db: Session) -> None:
        # Given an organization with an active policy
        org = make_account(db).organization
        create_policy(
            db,
            organization_id=org.id,
            name="Fast",
            max_retries=4,
            initial_delay_minutes=30,
            backoff_multiplier=2,
            max_delay_minutes=600,
            enabled_channels=["email", "sms"],
        )
        # When a failure is recorded
        before = utc_now()
        opened = record_failure(db, organization_id=org.id, data=failure_input())
        db.commit()
        # Then contact data is normalised and the attempt copies the policy
        attempt = opened.attempt
        assert opened.created
        assert opened.outcome is Ingested.opened
        transaction = db.get(Transaction, attempt.transaction_id)
        assert transaction is not None
        assert transaction.customer_email == "Jane.Doe@example.com"
        assert transaction.customer_phone == "+4915123456789"
        assert transaction.customer_locale == "de_DE"
        assert transaction.currency == "EUR"
        assert attempt.status == AttemptStatus.created
        assert attempt.max_retries == 4
        assert attempt.enabled_channels == ["email", "sms"]
        assert attempt.decline_category == DeclineCategory.soft
        assert attempt.next_retry_at is not None
        assert attempt.next_retry_at >= before + timedelta(minutes=30)
        failure = db.get(FailureEvent, attempt.failure_event_id)
        assert failure is not None
        assert failure.idempotency_key == default_idempotency_key(
            gateway="stripe",
            external_ref="inv_1001",
            occurred_at=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        )

    def test_same_idempotency_key_returns_the_same_attempt(self, db: Session) -> None:
        org = make_account(db).organization
        first = record_failure(db, organization_id=org.id, data=failure_input())
        db.commit()
        second = record_failure(db, organization_id=org.id, data=failure_input())
        db.commit()
        assert not second.created
        assert second.outcome is Ingested.duplicate
        assert second.attempt.id == first.attempt.id
        assert _count(db, FailureEvent) == 1
        assert _count(db, RecoveryAttempt) == 1

    def test_replayed_key_returns_its_attempt_even_after_completion(self, db: Session) -> None:
        # Given a failure whose attempt was paid
        org = make_account(db).organization
        first = record_failure(db, organization_id=org.id, data=failure_input())
        complete_attempt(db, attempt=first.attempt, paid_via="api")
        db.commit()
        # When the same report arrives again (a retried webhook)
        again = record_failure(db, organization_id=org.id, data=failure_input())
        db.commit()
        # Then no new attempt opens for the old failure
        assert again.attempt.id == first.attempt.id
        assert again.attempt.status == AttemptStatus.completed
        assert again.outcome is Ingested.already_paid
        assert _count(db, RecoveryAttempt) == 1

    def test_second_failure_while_attempt_open_opens_nothing_new(self, db: Session) -> None:
        org = make_account(db).organization
        first = record_failure(db, organization_id=org.id, data=failure_input())
        db.commit()
        later = failure_input(
            occurred_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC), amount_minor=5999
        )
        second = record_failure(db, organization_id=org.id, data=later)
        db.commit()
        assert not second.created
        assert second.outcome is Ingested.already_open
        assert second.attempt.id == first.attempt.id
        assert _count(db, FailureEvent) == 2
        transaction = db.get(Transaction, first.attempt.transaction_id)
        assert transaction is not None and transaction.amount_minor == 5999

    def test_new_failure_after_completion_opens_a_new_attempt(self, db: Session) -> None:
        org = make_account(db).organization
        first = record_failure(db, organization_id=org.id, data=failure_input())
        complete_attempt(db, attempt=first.attempt, paid_via="api")
        db.commit()
        later = failure_input(occurred_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
        second = record_failure(db, organization_id=org.id, data=later)
        db.commit()
        assert second.created
        assert second.outcome is Ingested.opened
        assert second.attempt.id != first.attempt.id
        assert second.attempt.transaction_id == first.attempt.transaction_id

    def test_a_hard_decline_opens_its_attempt_cancelled(self, db: Session) -> None:
        org = make_account(db).organization
        result = record_failure(
            db, organization_id=org.id, data=failure_input(decline_code="lost_card")
        )
        db.commit()
        assert (result.outcome, result.created) == (Ingested.hard_declined, True)
        assert result.attempt.status == AttemptStatus.cancelled

    def test_a_later_hard_decline_stops_the_open_attempt(self, db: Session) -> None:
        # Given an open attempt
        org = make_account(db).organization
        first = record_failure(db, organization_id=org.id, data=failure_input())
        db.commit()
        # When a new failure of the same payment says the card was stolen
        later = failure_input(
            occurred_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC), decline_code="stolen_card"
        )
        second = record_failure(db, organization_id=org.id, data=later)
        db.commit()
        # Then the same attempt is stopped, and the result says so
        assert (second.outcome, second.created) == (Ingested.hard_declined, False)
        assert second.attempt.id == first.attempt.id
        assert second.attempt.status == AttemptStatus.cancelled
        assert second.attempt.cancel_reason == "hard decline: stolen_card"

    def test_a_replay_that_adds_a_hard_decline_stops_the_attempt(self, db: Session) -> None:
        # Given an open attempt opened by a report without a decline code
        org = make_account(db).organization
        first = record_failure(
            db, organization_id=org.id, data=failure_input(idempotency_key="k1", decline_code=None)
        )
        db.commit()
        # When the same failure is reported again, now with a hard decline code
        again = record_failure(
            db,
            organization_id=org.id,
            data=failure_input(idempotency_key="k1", decline_code="stolen_card"),
        )
        db.commit()
        # Then it is one failure, and the decline it adds stops the attempt
        assert again.outcome is Ingested.hard_declined
        assert again.attempt.id == first.attempt.id
        assert again.attempt.status == AttemptStatus.cancelled
        assert _count(db, FailureEvent) == 1

    def test_after_a_hard_decline_a_report_opens_nothing(self, db: Session) -> None:
        # Given a payment stopped by a hard decline
        org = make_account(db).organization
        record_failure(db, organization_id=org.id, data=failure_input(decline_code="stolen_card"))
        db.commit()
        # When the same decline is reported again, then a soft failure of the payment
        same = record_failure(
            db,
            organization_id=org.id,
            data=failure_input(
                occurred_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC), decline_code="stolen_card"
            ),
        )
        soft = record_failure(
            db,
            organization_id=org.id,
            data=failure_input(occurred_at=datetime(2026, 11, 3, 9, 0, tzinfo=UTC)),
        )
        db.commit()
        # Then the first repeats the hard decline, the second finds the chase ended
        assert same.outcome is Ingested.hard_declined
        assert soft.outcome is Ingested.already_ended
        assert not same.created and not soft.created
        assert _count(db, RecoveryAttempt) == 1

    def test_same_reference_in_two_organizations_is_two_transactions(self, db: Session) -> None:
        org_a = make_account(db).organization
        org_b = make_account(db).organization
        a = record_failure(db, organization_id=org_a.id, data=failure_input())
        b = record_failure(db, organization_id=org_b.id, data=failure_input())
        db.commit()
        assert a.created and b.created
        assert a.attempt.transaction_id != b.attempt.transaction_id

    def test_hard_decline_opens_a_cancelled_attempt_without_reminders(self, db: Session) -> None:
        org = make_account(db).organization
        opened = record_failure(
            db, organization_id=org.id, data=failure_input(decline_code="stolen_card")
        )
        db.commit()
        assert opened.attempt.status == AttemptStatus.cancelled
        assert opened.attempt.decline_category == DeclineCategory.hard
        assert opened.attempt.next_retry_at is None

    def test_later_hard_decline_stops_the_open_attempt(self, db: Session) -> None:
        # Given an attempt opened for a soft decline
        org = make_account(db).organization
        first = record_failure(db, organization_id=org.id, data=failure_input())
        db.commit()
        assert first.attempt.status == AttemptStatus.created
        # When the next charge of the same payment comes back as a stolen card
        later = failure_input(
            occurred_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC), decline_code="stolen_card"
        )
        second = record_failure(db, organization_id=org.id, data=later)
        db.commit()
        # Then the same attempt is cancelled and no reminder is scheduled
        assert second.attempt.id == first.attempt.id
        db.refresh(first.attempt)
        assert first.attempt.status == AttemptStatus.cancelled
        assert first.attempt.cancel_reason == "hard decline: stolen_card"
        assert (first.attempt.decline_category, first.attempt.next_retry_at) == ("hard", None)

    def test_later_decline_code_sets_the_wording_of_an_open_attempt(self, db: Session) -> None:
        org = make_account(db).organization
        first = record_failure(db, organization_id=org.id, data=failure_input(decline_code=None))
        db.commit()
        later = failure_input(
            occurred_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC), decline_code="expired_card"
        )
        record_failure(db, organization_id=org.id, data=later)
        db.commit()
        db.refresh(first.attempt)
        assert first.attempt.status == AttemptStatus.created
        assert first.attempt.decline_category == DeclineCategory.customer_action

    def test_explicit_category_overrides_the_table(self, db: Session) -> None:
        org = make_account(db).organization
        opened = record_failure(
            db,
            organization_id=org.id,
            data=failure_input(decline_category=DeclineCategory.customer_action),
        )
        assert opened.attempt.decline_category == DeclineCategory.customer_action

    def test_phone_without_country_code_uses_the_locale_region(self, db: Session) -> None:
        org = make_account(db).organization
        opened = record_failure(
            db, organization_id=org.id, data=failure_input(customer_phone="0151 23456789")
        )
        transaction = db.get(Transaction, opened.attempt.transaction_id)
        assert transaction is not None and transaction.customer_phone == "+4915123456789"

    @pytest.mark.parametrize(
        ("given", "phone", "locale", "zone"),
        [
            ("America/Chicago", "+4915123456789", "de_DE", "America/Chicago"),
            (None, "+4915123456789", "en_US", "Europe/Berlin"),
            (None, "+1 415 555 0123", "en", "America/Los_Angeles"),
            # A mobile number of a country of several zones: the country's reference zone
            (None, "+7 916 123-45-67", "ru", "Europe/Moscow"),
            (None, None, "pt_BR", "America/Sao_Paulo"),
            (None, None, "en", "UTC"),
        ],
    )
    def test_the_customers_zone_is_given_or_derived(
        self, db: Session, given: str | None, phone: str | None, locale: str, zone: str
    ) -> None:
        # Given a report with or without a zone, phone number and locale with a country
        org = make_account(db).organization
        data = failure_input(customer_timezone=given, customer_phone=phone, customer_locale=locale)
        # When it is recorded
        opened = record_failure(db, organization_id=org.id, data=data)
        # Then the transaction holds the zone given, else the phone's, else the locale's, or UTC
        transaction = db.get(Transaction, opened.attempt.transaction_id)
        assert transaction is not None and transaction.customer_timezone == zone

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"amount_minor": 0}, "amount_minor"),
            ({"currency": "XYZ"}, "currency"),
            ({"customer_email": "not-an-email"}, "customer_email"),
            ({"customer_phone": "12"}, "customer_phone"),
            ({"customer_locale": "zz_QQ_nope"}, "customer_locale"),
            ({"customer_timezone": "Mars/Olympus"}, "customer_timezone"),
            ({"external_ref": "  "}, "external_ref"),
            ({"occurred_at": datetime(2026, 11, 1, 12, 0)}, "occurred_at"),
        ],
    )
    def test_invalid_input_names_the_field(
        self, db: Session, overrides: dict[str, object], field: str
    ) -> None:
        org = make_account(db).organization
        with pytest.raises(InvalidInput) as error:
            record_failure(db, organization_id=org.id, data=failure_input(**overrides))
        assert error.value.field == field
        assert _count(db, Transaction) == 0


class TestConcurrentRecordFailure:
    def _race(self, organization_id: int, inputs: list[FailureInput]) -> list[int]:
        from concurrent.futures import ThreadPoolExecutor
        from threading import Barrier

        from stealth_recovery.core.database import session_scope

        barrier = Barrier(len(inputs))

        def one(data: FailureInput) -> int:
            barrier.wait()
            with session_scope() as session:
                opened = record_failure(session, organization_id=organization_id, data=data)
                return opened.attempt.id

        with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
            return list(pool.map(one, inputs))

    def test_twenty_identical_reports_open_one_attempt(
        self, db: Session, postgres_only: None
    ) -> None:
        org = make_account(db).organization
        ids = self._race(org.id, [failure_input() for _ in range(20)])
        assert len(set(ids)) == 1
        assert _count(db, RecoveryAttempt) == 1
        assert _count(db, FailureEvent) == 1
        assert _count(db, Transaction) == 1

    def test_twenty_distinct_failures_of_one_transaction_open_one_attempt(
        self, db: Session, postgres_only: None
    ) -> None:
        org = make_account(db).organization
        inputs = [failure_input(idempotency_key=f"evt_{n}") for n in range(20)]
        ids = self._race(org.id, inputs)
        assert len(set(ids)) == 1
        assert _count(db, RecoveryAttempt) == 1
        assert _count(db, FailureEvent) == 20


class TestDefaultIdempotencyKey:
    def test_readable_for_ordinary_references(self) -> None:
        at = datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
        key = default_idempotency_key(gateway="stripe", external_ref="inv_1", occurred_at=at)
        assert key == "stripe:inv_1:2026-11-01T13:00:00+00:00"

    def test_long_reference_is_hashed_to_fit_and_stays_stable(self, db: Session) -> None:
        # Given a reference of the longest allowed length
        ref = "r" * 255
        at = datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
        key = default_idempotency_key(gateway="g" * 64, external_ref=ref, occurred_at=at)
        assert len(key) <= 255
        assert key == default_idempotency_key(gateway="g" * 64, external_ref=ref, occurred_at=at)
        # Then such a failure is stored and a replay finds it
        org = make_account(db).organization
        first = record_failure(db, organization_id=org.id, data=failure_input(external_ref=ref))
        again = record_failure(db, organization_id=org.id, data=failure_input(external_ref=ref))
        db.commit()
        assert again.attempt.id == first.attempt.id and not again.created
