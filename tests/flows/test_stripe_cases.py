"""Real-world Stripe cases, replayed: each JSON file in `stripe_cases/` is one kind of failure seen
against Stripe (event shapes, orders, API versions) with its steps and expected outcome.

Every file becomes a test. Placeholders in braces (`{inv}`, `{pi}`, …) are fresh ids per run;
steps are signed webhook deliveries (`stripe`), a "retry now" of every open attempt
(`retry_now_open`, then the whole reminder schedule), and clicks on the pay button
(`pay_click`). The checks per case spell out its `expected` sentence.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from babel.numbers import parse_decimal
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from stealth_recovery.core.time import shifted_clock
from stealth_recovery.integrations.stripe.currencies import stripe_digits
from stealth_recovery.integrations.stripe.tasks import sweep_ended_checkouts
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery.models import OPEN_STATUSES, RecoveryAttempt
from stealth_recovery.retry import policy
from stealth_recovery.retry.runtime import run_due_now
from tests.support.builders import api_key_headers, see_committed
from tests.support.smtp import SmtpSink
from tests.support.stripe_events import StripeOrg, new_id, payment_intent
from tests.support.stripe_server import FakeStripe

CASES = Path(__file__).parent / "stripe_cases"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_PREFIXES = {"inv": "in", "cus": "cus", "sub": "sub", "pi": "pi", "ch": "ch", "cs": "cs_test"}
# The default policy's three reminders, 60 min ×2 apart: these offsets pass all of them.
_WHOLE_SCHEDULE = (timedelta(hours=h, seconds=5) for h in (3, 7, 24, 24 * 6))


def _fill(value: Any, ids: dict[str, str]) -> Any:
    """The case's JSON with each `{name}` replaced by this run's id for it."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(
            lambda m: ids.setdefault(m[1], new_id(_PREFIXES.get(m[1], m[1]))), value
        )
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@dataclass
class Replay:
    """One case being replayed against one connected organization."""

    org: StripeOrg
    stripe: FakeStripe
    db: Session
    smtp: SmtpSink
    api_version: str
    ids: dict[str, str] = field(default_factory=dict)
    outcomes: list[str] = field(default_factory=list)
    pay_clicks: list[Any] = field(default_factory=list)
    # (what the case expects the customer to read, what the pay page shows, what Stripe charges)
    amounts: list[tuple[str, str, Decimal]] = field(default_factory=list)

    def attempts(self) -> list[RecoveryAttempt]:
        """The attempts about this replay's payments (its fresh ids)."""
        see_committed(self.db)
        ids = list(self.ids.values())
        return list(
            self.db.scalars(
                select(RecoveryAttempt)
                .join(Transaction, Transaction.id == RecoveryAttempt.transaction_id)
                .where(
                    RecoveryAttempt.organization_id == self.org.organization_id,
                    or_(
                        Transaction.external_ref.in_(ids),
                        Transaction.psp_payment_id.in_(ids),
                        Transaction.psp_invoice_id.in_(ids),
                    ),
                )
                .order_by(RecoveryAttempt.id)
            )
        )

    def deliver(self, event_type: str, obj: dict[str, Any]) -> None:
        body = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": self.api_version,
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        response = self.org.post(body)
        assert response.status_code == 200, response.text
        self.outcomes.append(response.json()["outcome"])

    def retry_now_open(self) -> None:
        for attempt in self.attempts():
            if attempt.status in OPEN_STATUSES:
                response = self.org.client.post(
                    f"/v1/retry/attempts/{attempt.id}/retry-now", headers=self.org.account.headers
                )
                assert response.status_code == 202, response.text
        run_due_now()
        for offset in _WHOLE_SCHEDULE:
            with shifted_clock(offset):
                run_due_now()

    def pay_click(self) -> None:
        [attempt] = [a for a in self.attempts() if a.status in OPEN_STATUSES]
        response = self.org.client.post(f"/pay/{attempt.token}/pay", follow_redirects=False)
        assert response.status_code == 303, response.text
        self.ids.setdefault("aid", str(attempt.id))
        opened = self.attempts()[0].checkout_session_id
        if opened:
            self.ids.setdefault("cs", opened)
        self.pay_clicks.append(response)

    def run(self, steps: list[dict[str, Any]]) -> None:
        for raw in steps:
            step = _fill(raw, self.ids)
            if "stripe" in step:
                self.deliver(step["stripe"], step["object"])
            elif step.get("retry_now_open"):
                self.retry_now_open()
            elif step.get("pay_click"):
                self.pay_click()
            else:
                raise AssertionError(f"unknown step {step}")


def _register_invoices(replay: Replay, steps: list[dict[str, Any]]) -> None:
    """The case's invoices exist at Stripe, paid by the case's payment intent (Stripe knows the
    link even when the events of a basil account do not say it)."""
    for raw in steps:
        if raw.get("stripe") == "invoice.payment_failed":
            obj = _fill(raw["object"], replay.ids)
            replay.stripe.add_invoice(obj, payment_intent=_fill("{pi}", replay.ids))


# -- what each case expects ------------------------------------------------------------------


def _one_attempt_one_reminder_per_step(replay: Replay, case: dict[str, Any]) -> None:
    # "one attempt, one reminder per step (both events describe one failed payment)"
    [attempt] = replay.attempts()
    assert attempt.retry_count == attempt.max_retries
    assert len(replay.smtp.messages) == attempt.max_retries
    assert {m.rcpt_tos[0] for m in replay.smtp.messages} == {"customer.one@example.com"}
    # And Stripe was asked for the link once, not once per event
    assert len(replay.stripe.requests_to("/v1/invoice_payments")) == 1


def _no_open_attempt_no_reminder(replay: Replay, case: dict[str, Any]) -> None:
    # "no open attempt; no reminder to a stolen-card customer"
    attempts = replay.attempts()
    assert attempts, "the failure is recorded"
    assert all(a.status == "cancelled" for a in attempts)
    assert {a.cancel_reason for a in attempts} == {"hard decline: stolen_card"}
    assert replay.smtp.messages == []


def _stopped_with(reason: str) -> Callable[[Replay, dict[str, Any]], None]:
    def check(replay: Replay, case: dict[str, Any]) -> None:
        # "attempt stopped; no reminder" after the debt ended in Stripe
        [attempt] = replay.attempts()
        assert (attempt.status, attempt.cancel_reason) == ("cancelled", reason)
        assert "attempt_cancelled" in replay.outcomes
        assert replay.smtp.messages == []

    return check


def _invoice_settled_or_second_charge_flagged(replay: Replay, case: dict[str, Any]) -> None:
    # "after the recovery payment the original invoice is settled at Stripe (no second
    # charge), or the second charge is flagged"
    [click] = replay.pay_clicks
    invoice = replay.stripe.invoices[replay.ids["inv"]]
    # The pay button pays the invoice itself: no separate Checkout payment is ever created
    assert click.headers["location"] == invoice["hosted_invoice_url"]
    assert replay.stripe.created_sessions() == []
    # And a payment that still arrived beside it (the case's Checkout) is flagged, not lost
    [attempt] = replay.attempts()
    assert attempt.status == "completed"
    assert replay.outcomes[-2:] == ["attempt_completed", "second_payment"]
    assert attempt.second_payment_ref == "debt"


def _paid_after_dunning_ended(replay: Replay, case: dict[str, Any]) -> None:
    # "attempt completed (money came in), or the Checkout Session expired when the attempt
    # ended": both hold
    [attempt] = replay.attempts()
    assert replay.outcomes[-1] == "attempt_completed_after_end"
    assert (attempt.status, attempt.paid_after_end) == ("completed", True)
    assert attempt.cancel_reason == "retries exhausted"
    assert replay.stripe.sessions[replay.ids["cs"]]["status"] == "expired"


def _message_amount_is_what_stripe_charges(replay: Replay, case: dict[str, Any]) -> None:
    # "message amount equals the amount Stripe charges": checked in `_replay_amounts`
    for expected, shown, charged in replay.amounts:
        assert shown == expected
        assert _read(shown) == charged


EXPECTED: dict[str, Callable[[Replay, dict[str, Any]], None]] = {
    "C09_psp_minor_unit_mismatch": _message_amount_is_what_stripe_charges,
    "C22_recovery_payment_leaves_invoice_open": _invoice_settled_or_second_charge_flagged,
    "C21_paid_after_dunning_ended": _paid_after_dunning_ended,
    "C04_basil_unlinked_events": _one_attempt_one_reminder_per_step,
    "C03_hard_decline_then_soft_event": _no_open_attempt_no_reminder,
    "invoice_voided": _stopped_with("invoice voided in Stripe"),
    "C07_subscription_cancelled_mid_dunning": _stopped_with("subscription cancelled in Stripe"),
}


def _cases() -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in sorted(CASES.glob("*.json"))]


def test_every_case_file_has_its_expectation() -> None:
    names = {json.loads(p.read_text())["case"] for p in CASES.glob("*.json")}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("path", _cases())
def test_case(
    path: Path,
    stripe_org: StripeOrg,
    stripe_server: FakeStripe,
    db: Session,
    smtp_sink: SmtpSink,
) -> None:
    case = json.loads(path.read_text())
    if "checkout_completed" in case:
        _replay_paid_after_the_end(case, stripe_org, stripe_server, db, smtp_sink)
        return
    if "api_checkout" in case:
        _replay_amounts(case, stripe_org, stripe_server, db)
        return
    sequences = [case["steps"]] + ([case["minimal"]] if "minimal" in case else [])
    for steps in sequences:
        # Given fresh ids for each sequence of the case
        smtp_sink.messages.clear()
        replay = Replay(
            stripe_org,
            stripe_server,
            db,
            smtp_sink,
            api_version=case.get("api_version", "2024-06-20"),
        )
        _register_invoices(replay, steps)
        # When its steps are replayed in order
        replay.run(steps)
        # Then the outcome is the one the case expects
        EXPECTED[case["case"]](replay, case)


def _replay_paid_after_the_end(
    case: dict[str, Any],
    org: StripeOrg,
    stripe: FakeStripe,
    db: Session,
    smtp: SmtpSink,
) -> None:
    """A case whose steps are implied: a failure under the case's policy, the customer opening
    Checkout, every reminder and the grace period passing, then the Checkout payment."""
    policy.create_policy(
        db,
        organization_id=org.organization_id,
        name="case policy",
        max_retries=int(case["policy"]["max_retries"]),
        initial_delay_minutes=60,
        backoff_multiplier=2.0,
        max_delay_minutes=1440,
        enabled_channels=["email"],
    )
    db.commit()
    replay = Replay(org, stripe, db, smtp, api_version="2024-06-20")
    failed = payment_intent(pi_id=_fill("{pi}", replay.ids), currency="eur", amount=2500)
    replay.deliver("payment_intent.payment_failed", failed)
    replay.pay_click()
    with shifted_clock(timedelta(hours=1, seconds=5)):
        run_due_now()
    with shifted_clock(timedelta(hours=4)):
        run_due_now()
    assert replay.attempts()[0].status == "cancelled"
    sweep_ended_checkouts()
    replay.deliver("checkout.session.completed", _fill(case["checkout_completed"], replay.ids))
    EXPECTED[case["case"]](replay, case)


def _read(shown: str) -> Decimal:
    return parse_decimal(re.sub(r"[^\d.,]", "", shown), locale="en")


def _shown_amount(replay: Replay, attempt: RecoveryAttempt) -> str:
    page = replay.org.client.get(f"/pay/{attempt.token}")
    assert page.status_code == 200, page.text
    found = re.search(r'class="amount"[^>]*>([^<]+)<', page.text)
    assert found is not None, page.text
    return found[1].strip()


def _replay_amounts(case: dict[str, Any], org: StripeOrg, stripe: FakeStripe, db: Session) -> None:
    """Amounts in both directions: a Stripe event's amount as the customer reads it, and an API
    amount as Checkout charges it."""
    headers = api_key_headers(db, org.account.organization)
    db.commit()
    replay = Replay(org, stripe, db, smtp=None, api_version="2024-06-20")  # type: ignore[arg-type]
    for entry in case["stripe"]:
        inv = {
            **_fill(
                {"id": "{inv}", "object": "invoice", "customer_email": "cur@example.com"},
                replay.ids,
            ),
            "currency": entry["currency"],
            "amount_due": entry["amount_due"],
            "amount_remaining": entry["amount_due"],
        }
        replay.deliver("invoice.payment_failed", inv)
        [attempt] = replay.attempts()
        expected = entry["expect"].split(" ")[0]
        charged = Decimal(entry["amount_due"]).scaleb(-stripe_digits(entry["currency"]))
        replay.amounts.append((expected, _shown_amount(replay, attempt), charged))
    for entry in case["api_checkout"]:
        body = {**entry, "occurred_at": "2026-11-30T12:00:00Z"}
        response = org.client.post(
            "/v1/events/payment_failed",
            json=body,
            headers=headers,
        )
        assert response.status_code == 201, response.text
        see_committed(db)
        attempt = db.get(RecoveryAttempt, response.json()["id"])
        assert attempt is not None
        clicked = org.client.post(f"/pay/{attempt.token}/pay", follow_redirects=False)
        assert clicked.status_code == 303, clicked.text
        price = stripe.created_sessions()[-1].params["line_items"][0]["price_data"]
        charged = Decimal(int(price["unit_amount"])).scaleb(-stripe_digits(price["currency"]))
        shown = _shown_amount(replay, attempt)
        replay.amounts.append((shown, shown, charged))
    EXPECTED[case["case"]](replay, case)
