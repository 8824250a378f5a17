"""The dashboard and the pay page in a real browser: what people click, what they see."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import Role
from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt
from stealth_recovery.retry.models import RetryPolicy
from tests.support.browser import screenshot
from tests.support.builders import PASSWORD, Account, add_log, make_account, make_attempt
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.browser


def log_in(page: Page, email: str) -> None:
    page.goto("/dashboard/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))


@pytest.fixture
def history(db: Session, admin: Account) -> list[RecoveryAttempt]:
    """A few days of attempts: paid ones, an open one with messages, a hard decline."""
    now = utc_now()
    attempts = []
    for days_ago, name, amount in [(5, "Grace Hopper", 2900), (3, "Alan Turing", 9900)]:
        attempt = make_attempt(
            db,
            admin.organization,
            name=name,
            amount_minor=amount,
            email=f"{name.split()[0].lower()}@example.com",
            opened_at=now - timedelta(days=days_ago),
            due=False,
        )
        add_log(db, attempt, status="delivered", at=now - timedelta(days=days_ago, hours=-1))
        attempts.append(attempt)
    for attempt in attempts:
        recovery_service.complete_attempt(db, attempt=attempt, paid_via="api")
    open_attempt = make_attempt(
        db,
        admin.organization,
        name="Ada Lovelace",
        email="ada@example.com",
        phone="+12025550100",
        amount_minor=4900,
        opened_at=now - timedelta(days=1),
        due=False,
    )
    add_log(db, open_attempt, channel="email", status="delivered", at=now - timedelta(hours=20))
    add_log(
        db,
        open_attempt,
        channel="sms",
        status="failed",
        at=now - timedelta(hours=20),
        error="21610: the recipient has unsubscribed",
    )
    make_attempt(
        db,
        admin.organization,
        name="Sam Stolen",
        email="sam@example.com",
        decline_code="stolen_card",
        due=False,
    )
    db.commit()
    return [*attempts, open_attempt]


def test_an_admin_logs_in_and_sees_the_stats_and_charts(
    page: Page, admin: Account, history: list[RecoveryAttempt]
) -> None:
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))
    screenshot(page, "01-login")
    log_in(page, admin.user.email)

    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator('[data-stat="total_attempts"]')).to_have_text("4")
    expect(page.locator('[data-stat="recovered_revenue"]')).to_have_text("€128.00")
    expect(page.locator('[data-stat="recovery_rate"]')).to_have_text("66.7%")
    for chart in ("#chart-outcomes", "#chart-channels", "#chart-steps"):
        expect(page.locator(f"{chart} svg.chart").first).to_be_visible()
    # The outcome chart has bars, the channel chart one block per channel
    assert page.locator("#chart-outcomes svg rect").count() >= 3
    expect(page.locator("#chart-channels h3")).to_have_count(2)
    screenshot(page, "02-overview")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator('[data-stat="total_attempts"]')).to_be_visible()
    screenshot(page, "02-overview-phone")


def test_an_admin_creates_a_policy_after_a_validation_message(
    page: Page, admin: Account, db: Session
) -> None:
    log_in(page, admin.user.email)
    page.get_by_role("link", name="Retry policies").click()
    form = page.locator("#policy-form")
    form.get_by_label("Name").fill("Two emails, then SMS")
    form.get_by_label("Reminders (1–10)").fill("12")
    form.get_by_label("SMS").check()
    page.get_by_role("button", name="Create and activate").click()

    expect(page.locator("#err-max_retries")).to_have_text("must be between 1 and 10")
    expect(form.get_by_label("Name")).to_have_value("Two emails, then SMS")
    screenshot(page, "03-policy-validation")

    form.get_by_label("Reminders (1–10)").fill("3")
    page.get_by_role("button", name="Preview schedule").click()
    expect(page.locator("#schedule-preview tbody tr")).to_have_count(3)
    page.get_by_role("button", name="Create and activate").click()

    expect(page.get_by_role("status")).to_contain_text("Two emails, then SMS")
    row = page.locator("#policies-table tr", has_text="Two emails, then SMS")
    expect(row.get_by_text("active", exact=True)).to_be_visible()
    screenshot(page, "04-policies")
    policy = db.scalar(select(RetryPolicy))
    assert policy is not None and policy.is_active and policy.max_retries == 3
    assert policy.enabled_channels == ["email", "sms"]
    db.commit()


def test_an_admin_finds_an_attempt_and_reads_its_timeline(
    page: Page, admin: Account, history: list[RecoveryAttempt]
) -> None:
    log_in(page, admin.user.email)
    page.get_by_role("link", name="Attempts").click()
    expect(page.locator("#attempts-table tbody tr")).to_have_count(4)
    screenshot(page, "05-attempts")

    page.get_by_label("Search").fill("Ada")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#attempts-table tbody tr")).to_have_count(1)
    page.get_by_role("link", name="Ada Lovelace").click()

    expect(page.get_by_role("heading", name=re.compile("€49.00 from Ada Lovelace"))).to_be_visible()
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Attempt opened")
    expect(timeline).to_contain_text("Reminder 1 by email")
    expect(timeline).to_contain_text("delivery confirmed")
    expect(timeline).to_contain_text("21610: the recipient has unsubscribed")
    screenshot(page, "06-attempt")


def test_retry_now_sends_the_reminder_to_the_smtp_server(
    page: Page, admin: Account, db: Session, smtp_sink: SmtpSink
) -> None:
    from stealth_recovery.retry.runtime import reset_runtime

    attempt = make_attempt(
        db, admin.organization, name="Ada Lovelace", email="ada@example.com", due=False
    )
    log_in(page, admin.user.email)
    page.goto(f"/dashboard/attempts/{attempt.id}")
    # On the embedded layout the step runs at once, before the answer: the flash tells its outcome
    reset_runtime()  # the provider clients must use the sink's address
    try:
        page.get_by_role("button", name="Retry now").click()
        expect(page.get_by_role("status")).to_contain_text(
            "Reminder 1 of 3: email sent to ada@example.com."
        )
    finally:
        reset_runtime()
    [message] = smtp_sink.wait_for(1)
    assert message.rcpt_tos == ["ada@example.com"]
    assert f"/pay/{attempt.token}" in message.body("plain")

    # And the timeline says the same
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Reminder 1 by email")
    expect(timeline).to_contain_text("accepted by SMTP")
    expect(timeline).not_to_contain_text("queued to go out now")
    screenshot(page, "07-attempt-after-retry-now")


def test_a_customer_pays_from_a_phone(phone: Page, admin: Account, db: Session) -> None:
    # A demo-style organization: its pay page records test payments (no provider needed).
    admin.organization.is_test = True
    db.commit()
    attempt = make_attempt(
        db, admin.organization, name="Ada Lovelace", amount_minor=4900, due=False
    )
    phone.goto(f"/pay/{attempt.token}")
    expect(phone.get_by_text(admin.organization.name, exact=True)).to_be_visible()
    expect(
        phone.get_by_role("button", name=re.compile(r"Make a test payment of €49\.00"))
    ).to_be_visible()
    # Nothing is wider than the phone's screen
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "08-pay-phone")

    phone.get_by_role("button", name=re.compile("test payment")).click()
    expect(phone.get_by_role("heading", name="Test payment recorded")).to_be_visible()
    screenshot(phone, "09-paid-phone")
    db.expire_all()
    paid = db.get(RecoveryAttempt, attempt.id)
    assert paid is not None and paid.status == AttemptStatus.completed
    db.commit()


def test_an_analyst_never_sees_admin_controls(
    page: Page, admin: Account, db: Session, history: list[RecoveryAttempt]
) -> None:
    analyst = make_account(db, role=Role.analyst, organization=admin.organization)
    db.add(
        RetryPolicy(
            organization_id=admin.organization.id,
            name="Standard",
            max_retries=3,
            initial_delay_minutes=60,
            backoff_multiplier=2.0,
            max_delay_minutes=1440,
            enabled_channels=["email"],
            is_active=True,
        )
    )
    db.commit()
    log_in(page, analyst.user.email)
    expect(page.get_by_role("link", name="Users & API keys")).to_have_count(0)

    page.goto(f"/dashboard/attempts/{history[-1].id}")
    expect(page.locator("#timeline")).to_be_visible()
    expect(page.get_by_role("button", name="Retry now")).to_have_count(0)

    page.goto("/dashboard/policies")
    expect(page.get_by_text("Standard", exact=True)).to_be_visible()
    for label in ("Create and activate", "Deactivate", "Activate"):
        expect(page.get_by_role("button", name=label, exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Preview schedule")).to_be_visible()
    screenshot(page, "10-policies-analyst")

    page.goto("/dashboard/team")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_an_admin_creates_an_api_key_shown_once(page: Page, admin: Account) -> None:
    log_in(page, admin.user.email)
    page.get_by_role("link", name="Users & API keys").click()
    page.get_by_label("Name", exact=True).last.fill("billing-server")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-api-key")
    expect(key).to_have_text(re.compile(r"^sk_"))
    screenshot(page, "11-team")
    page.goto("/dashboard/team")
    expect(page.locator("#new-api-key")).to_have_count(0)
    expect(page.locator("#keys-table")).to_contain_text("billing-server")
