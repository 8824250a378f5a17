"""Every dashboard page at a phone's width (390 px): nothing scrolls sideways, charts fit their
card with readable labels. Each page is also kept as a picture at desktop and phone size
(test-artifacts/)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import RecoveryAttempt
from tests.support.browser import PHONE, screenshot
from tests.support.builders import (
    PASSWORD,
    Account,
    add_log,
    keep_in_outbox,
    make_attempt,
)

pytestmark = pytest.mark.browser

PHONE_WIDTH = PHONE["viewport"]["width"]  # type: ignore[index]
# The smallest chart text a person reads without zooming, in CSS pixels.
READABLE_PX = 9


@pytest.fixture
def open_attempt(db: Session, admin: Account) -> RecoveryAttempt:
    """A month of history and one open attempt with an email and a failed SMS."""
    now = utc_now()
    for days_ago in (2, 9, 17, 26):
        paid = make_attempt(
            db,
            admin.organization,
            name=f"Customer {days_ago} with a rather long name",
            email=f"customer.{days_ago}.with.a.long.address@example.com",
            opened_at=now - timedelta(days=days_ago),
            due=False,
        )
        add_log(db, paid, status="delivered", at=now - timedelta(days=days_ago))
        recovery_service.complete_attempt(db, attempt=paid, paid_via="api")
    attempt = make_attempt(
        db,
        admin.organization,
        name="Ada Lovelace",
        email="ada@example.com",
        phone="+12025550100",
        amount_minor=4900,
        opened_at=now,
        due=False,
    )
    add_log(db, attempt, channel="email", status="delivered", at=now)
    add_log(db, attempt, channel="sms", status="failed", at=now, error="21610: unsubscribed")
    db.commit()
    kept = make_attempt(db, admin.organization, name="Kept Customer", opened_at=now, due=False)
    keep_in_outbox(db, kept)
    return attempt


def _pages(attempt: RecoveryAttempt) -> dict[str, str]:
    return {
        "overview": "/dashboard",
        "overview-90-days": "/dashboard?days=90",
        "attempts": "/dashboard/attempts",
        "attempt": f"/dashboard/attempts/{attempt.id}",
        "pay-preview": f"/dashboard/attempts/{attempt.id}/pay-preview",
        "policies": "/dashboard/policies",
        "outbox-email": "/dashboard/outbox?channel=email",
        "outbox-sms": "/dashboard/outbox?channel=sms",
        "outbox-whatsapp": "/dashboard/outbox?channel=whatsapp",
        "team": "/dashboard/team",
    }


@pytest.fixture
def signed_in(browser: Browser, served_base_url: str, admin: Account) -> Iterator[dict[str, Page]]:
    """The admin signed in on a desktop and on a phone."""
    pages = {}
    contexts = []
    for name, options in {
        "desktop": {"viewport": {"width": 1366, "height": 900}},
        "phone": PHONE,
    }.items():
        context = browser.new_context(base_url=served_base_url, **options)  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/dashboard/login")
        screenshot(page, f"page-login-{name}")
        if name == "phone":
            assert _sideways(page) <= 0
        page.get_by_label("Email").fill(admin.user.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(re.compile(r"/dashboard$"))
        pages[name] = page
    yield pages
    for context in contexts:
        context.close()


# The elements that stick out past the phone's screen, to name them when the check fails.
WIDEST = f"""() => {{
  const right = e => e.getBoundingClientRect().right;
  return [...document.querySelectorAll('body *')]
    .filter(e => right(e) > {PHONE_WIDTH} + 1)
    .filter(e => !e.parentElement || right(e.parentElement) <= {PHONE_WIDTH} + 1)
    .slice(0, 4).map(e => `${{e.tagName}}.${{e.className}} ${{Math.round(right(e))}}`)
    .join(', ');
}}"""


CHART_BOXES = ".chart-card, .chart-card *"
# Chart cards, or anything inside them, whose content is wider than their box.
CRAMPED = """els => els.filter(e => e.getClientRects().length && e.scrollWidth > e.clientWidth + 1)
  .map(e => `${e.tagName}.${e.className} ${e.scrollWidth} > ${e.clientWidth}`).join(', ')"""


def _sideways(page: Page) -> int:
    """How many CSS pixels the page is wider than the phone's screen (0: no sideways scroll).

    A mobile browser widens its layout to fit wide content, so the measure is the screen's
    width, not `innerWidth`.
    """
    return int(page.evaluate("document.documentElement.scrollWidth")) - PHONE_WIDTH


def test_every_page_fits_a_phone_and_keeps_chart_labels_readable(
    signed_in: dict[str, Page], open_attempt: RecoveryAttempt
) -> None:
    phone = signed_in["phone"]
    problems = []
    for name, path in _pages(open_attempt).items():
        # Given each page of the dashboard
        for size, page in signed_in.items():
            page.goto(path)
            expect(page.locator("h1").first).to_be_visible()
            screenshot(page, f"page-{name}-{size}")
        # Then at 390 px nothing is wider than the screen
        if (extra := _sideways(phone)) > 0:
            wide = phone.evaluate(WIDEST)
            problems.append(f"{name}: {extra} px wider than the phone ({wide})")
        # and every chart label drawn is at a readable size
        heights = phone.eval_on_selector_all(
            "svg.chart text",
            "els => els.filter(e => e.getClientRects().length)"
            ".map(e => e.getBoundingClientRect().height)",
        )
        if heights and min(heights) < READABLE_PX:
            problems.append(f"{name}: chart text {min(heights):.1f} px high")
        # and each chart fits its card: nothing to scroll sideways inside it either
        if cramped := phone.eval_on_selector_all(CHART_BOXES, CRAMPED):
            problems.append(f"{name}: charts scroll inside their card ({cramped})")
    assert problems == []
