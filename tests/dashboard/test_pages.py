"""The dashboard pages: what each shows, to whom, and what the server refuses."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import ApiKey, User
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import utc_now
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt
from stealth_recovery.retry.models import RetryPolicy
from stealth_recovery.retry.tasks import send_recovery_notification
from tests.support.builders import Account, add_log, keep_in_outbox, make_account, make_attempt
from tests.support.smtp import SmtpSink
from tests.support.web import csrf_from, post_form


def _stat(html: str, name: str) -> str:
    match = re.search(rf'data-stat="{name}">([^<]*)<', html)
    assert match, f"no stat {name}"
    return match.group(1).strip()


class TestOverview:
    def test_shows_the_organizations_stats_revenue_and_rate(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        # Given two paid attempts, one open with a delivered and a failed message
        paid = [
            make_attempt(db, admin.organization, amount_minor=a, due=False) for a in (4900, 1500)
        ]
        for attempt in paid:
            recovery_service.complete_attempt(db, attempt=attempt, paid_via="api")
        open_attempt = make_attempt(db, admin.organization, due=False)
        add_log(db, open_attempt, channel="email", status="delivered")
        add_log(db, open_attempt, channel="sms", status="failed")
        # and another organization's attempt, which must not count
        other = make_account(db)
        make_attempt(db, other.organization, amount_minor=99900, due=False)
        db.commit()
        # When the admin opens the overview
        html = admin_web.get("/dashboard").text
        # Then the cards show this organization's figures only
        assert _stat(html, "total_attempts") == "3"
        assert _stat(html, "pending_retries") == "1"
        assert _stat(html, "sent_count") == "1"
        assert _stat(html, "recovered_revenue") == "€64.00"
        assert _stat(html, "recovery_rate") == "100.0%"  # 2 paid of 2 finished

    def test_the_period_selector_drives_the_cards(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        # Given a paid attempt opened 3 days ago and one opened 20 days ago, each with a message
        for days_ago, amount in ((3, 1000), (20, 2000)):
            attempt = make_attempt(
                db,
                admin.organization,
                amount_minor=amount,
                opened_at=utc_now() - timedelta(days=days_ago),
                due=False,
            )
            add_log(db, attempt, status="delivered", at=utc_now() - timedelta(days=days_ago))
            recovery_service.complete_attempt(db, attempt=attempt, paid_via="api")
        db.commit()
        # When the admin looks at 7 days, then at 30
        week = admin_web.get("/dashboard?days=7").text
        month = admin_web.get("/dashboard?days=30").text
        # Then each card counts the period it says
        assert (_stat(week, "total_attempts"), _stat(month, "total_attempts")) == ("1", "2")
        assert (_stat(week, "sent_count"), _stat(month, "sent_count")) == ("1", "2")
        assert _stat(week, "recovered_revenue") == "€10.00"
        assert _stat(month, "recovered_revenue") == "€30.00"
        assert "last 7 days" in week and "last 30 days" in month

    def test_draws_the_three_charts_as_svg(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        attempt = make_attempt(db, admin.organization, due=False)
        add_log(db, attempt, channel="email", status="delivered")
        add_log(db, attempt, channel="sms", status="bounced")
        recovery_service.complete_attempt(db, attempt=attempt, paid_via="api")
        db.commit()
        html = admin_web.get("/dashboard?days=7").text
        outcomes = html.split('id="chart-outcomes"')[1].split("</section>")[0]
        channels = html.split('id="chart-channels"')[1].split("</section>")[0]
        steps = html.split('id="chart-steps"')[1].split("</section>")[0]
        assert "<svg" in outcomes and "Completed: 1</title>" in outcomes
        assert "Email · " in channels and "Delivered: 1</title>" in channels
        assert "SMS · " in channels and "Bounced: 1</title>" in channels
        assert "<title>Before any: 1 (100%)</title>" in steps

    def test_an_empty_organization_sees_empty_charts(self, admin_web: TestClient) -> None:
        html = admin_web.get("/dashboard").text
        assert "No data yet" in html
        assert "No messages in this period." in html


class TestAttempts:
    def test_lists_newest_first_and_filters_by_status_and_search(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        older = make_attempt(
            db,
            admin.organization,
            name="Grace Hopper",
            email="grace@example.com",
            opened_at=utc_now() - timedelta(days=2),
            due=False,
        )
        newer = make_attempt(
            db, admin.organization, name="Alan Turing", email="alan@example.com", due=False
        )
        recovery_service.complete_attempt(db, attempt=older, paid_via="api")
        db.commit()

        html = admin_web.get("/dashboard/attempts").text
        assert html.index("Alan Turing") < html.index("Grace Hopper")

        completed = admin_web.get("/dashboard/attempts?status=completed").text
        assert "Grace Hopper" in completed and "Alan Turing" not in completed

        found = admin_web.get("/dashboard/attempts?q=ALAN@").text
        assert "Alan Turing" in found and "Grace Hopper" not in found
        assert f"/dashboard/attempts/{newer.id}" in found

        open_only = admin_web.get("/dashboard/attempts?status=open").text
        assert "Alan Turing" in open_only and "Grace Hopper" not in open_only

    def test_paginates_and_keeps_the_filters_in_the_links(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        for _ in range(27):
            make_attempt(db, admin.organization, due=False)
        first = admin_web.get("/dashboard/attempts?status=created").text
        assert "Showing 1–25 of 27" in first
        assert "/dashboard/attempts?status=created&amp;page=2" in first
        second = admin_web.get("/dashboard/attempts?status=created&page=2").text
        assert "Showing 26–27 of 27" in second
        assert second.count('class="row-link"') == 2

    def test_never_shows_another_organizations_attempts(
        self, admin_web: TestClient, db: Session
    ) -> None:
        other = make_account(db)
        foreign = make_attempt(db, other.organization, name="Someone Else", due=False)
        assert "Someone Else" not in admin_web.get("/dashboard/attempts").text
        response = admin_web.get(f"/dashboard/attempts/{foreign.id}")
        assert response.status_code == 404
        assert "recovery attempt not found" in response.text

    def test_the_status_filter_offers_every_status(self, admin_web: TestClient) -> None:
        html = admin_web.get("/dashboard/attempts").text
        for status in AttemptStatus:
            assert f'<option value="{status.value}"' in html


class TestAttemptDetail:
    def test_shows_the_customer_and_every_status_change_of_every_message(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        # Given Ada's attempt, with a delivered email and a failed SMS
        attempt = make_attempt(
            db,
            admin.organization,
            name="Ada Lovelace",
            email="ada@example.com",
            phone="+12025550100",
            amount_minor=4900,
            decline_code="expired_card",
            due=False,
        )
        add_log(db, attempt, channel="email", status="delivered")
        add_log(db, attempt, channel="sms", status="failed", error="21610: unsubscribed")
        html = admin_web.get(f"/dashboard/attempts/{attempt.id}").text
        assert "Ada Lovelace" in html and "ada@example.com" in html
        assert "€49.00" in html
        assert "customer action" in html and "expired_card" in html
        timeline = html.split('id="timeline"')[1]
        assert "Reminder 1 by email" in timeline and "Reminder 1 by sms" in timeline
        assert "accepted by SMTP" in timeline and "delivery confirmed" in timeline
        assert "21610: unsubscribed" in timeline
        assert "Attempt opened" in timeline


class TestAttemptHeader:
    def test_a_failed_reminder_is_not_counted_as_sent(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        # Given an attempt whose first reminder failed on every channel
        attempt = make_attempt(db, admin.organization, due=False)
        add_log(db, attempt, retry_number=0, status="failed", error="550 no such user")
        attempt.retry_count = 1
        db.commit()
        # When the admin opens it
        html = admin_web.get(f"/dashboard/attempts/{attempt.id}").text
        # Then the header says none went out
        summary = html.split('id="attempt-summary"')[1].split("</p>")[0]
        assert "0 of 3 reminders went out (1 reached no one)" in summary


class TestPayPreview:
    def test_previewing_the_pay_link_does_not_mark_it_opened(
        self, analyst_web: TestClient, admin: Account, db: Session
    ) -> None:
        # Given an open attempt the customer has not opened, of an organization whose pay page
        # takes (test) payments
        admin.organization.is_test = True
        db.commit()
        attempt = make_attempt(db, admin.organization, amount_minor=4900, due=False)
        html = analyst_web.get(f"/dashboard/attempts/{attempt.id}").text
        # When someone of the team previews its pay page from the dashboard
        assert f'href="/dashboard/attempts/{attempt.id}/pay-preview"' in html
        assert f'href="http://testserver/pay/{attempt.token}"' not in html
        preview = analyst_web.get(f"/dashboard/attempts/{attempt.id}/pay-preview")
        # Then they see the customer's page, marked as a preview, with the button disabled
        assert preview.status_code == 200
        assert "Preview for your team" in preview.text
        assert "disabled>Make a test payment of €49.00" in preview.text
        # and the attempt is still not opened
        db.expire_all()
        stored = db.get(RecoveryAttempt, attempt.id)
        assert stored is not None
        assert (stored.status, stored.opened_at) == (AttemptStatus.created, None)

    def test_a_closed_attempt_has_no_preview(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        attempt = make_attempt(db, admin.organization, due=False)
        recovery_service.cancel_attempt(db, attempt=attempt, reason="test")
        db.commit()
        page = admin_web.get(f"/dashboard/attempts/{attempt.id}").text
        assert "pay-preview" not in page
        response = admin_web.get(f"/dashboard/attempts/{attempt.id}/pay-preview")
        assert response.status_code == 409
        assert "can no longer be paid" in response.text

    def test_another_organizations_attempt_is_404(self, admin_web: TestClient, db: Session) -> None:
        other = make_account(db)
        attempt = make_attempt(db, other.organization, due=False)
        assert admin_web.get(f"/dashboard/attempts/{attempt.id}/pay-preview").status_code == 404


class TestOutbox:
    def test_each_channel_shows_what_the_customer_would_get(
        self, analyst_web: TestClient, admin: Account, db: Session
    ) -> None:
        # Given messages the outbox kept for this organization, and one of another
        attempt = make_attempt(db, admin.organization, due=False)
        keep_in_outbox(db, attempt)
        other = make_account(db)
        keep_in_outbox(db, make_attempt(db, other.organization, name="Eve", due=False))
        # When someone of the team opens each channel's page
        email = analyst_web.get("/dashboard/outbox").text
        sms = analyst_web.get("/dashboard/outbox?channel=sms").text
        whatsapp = analyst_web.get("/dashboard/outbox?channel=whatsapp").text
        # Then the e-mail is shown as sent (subject and HTML), the SMS with its segment count,
        # the WhatsApp template with its parameters, each marked outbox, this organization's only
        assert "Your payment of €49.00 to Acme did not go through" in email
        assert 'sandbox srcdoc="&lt;p&gt;Your payment' in email
        assert 'data-segments="1"' in sms and "1 SMS segment" in sms
        assert "payment_recovery" in whatsapp and "en_US" in whatsapp
        assert "https://pay.example/pay/w" in whatsapp
        for page in (email, sms, whatsapp):
            assert page.count('class="card outbox-message"') == 1
            assert "None of them reached a customer" in page

    def test_the_timeline_says_the_message_was_kept_not_sent(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        attempt = make_attempt(db, admin.organization, due=False)
        keep_in_outbox(db, attempt)
        attempt.retry_count = 1
        db.commit()
        html = admin_web.get(f"/dashboard/attempts/{attempt.id}").text
        assert "the local outbox (kept, not sent to the customer)" in html
        timeline = html.split('id="timeline"')[1]
        assert timeline.count('<span class="badge status-outbox">outbox</span>') == 6  # 3 + changes
        assert '<span class="badge status-sent">' not in timeline
        summary = html.split('id="attempt-summary"')[1].split("</p>")[0]
        assert "0 of 3 reminders went out · 1 kept in the local outbox" in summary
        assert "reached no one" not in summary


@pytest.mark.usefixtures("fresh_runtime")
class TestRetryNow:
    def test_embedded_sends_it_at_once_and_the_flash_tells_the_outcome(
        self, admin_web: TestClient, admin: Account, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given the embedded layout (no broker) and an attempt whose first reminder is an hour away
        attempt = make_attempt(db, admin.organization, email="ada@example.com", due=False)
        page = f"/dashboard/attempts/{attempt.id}"
        assert 'id="retry-now"' in admin_web.get(page).text
        # When an admin clicks "Retry now"
        response = post_form(admin_web, page, f"{page}/retry-now", {})
        assert response.status_code == 303
        # Then the message went out before the answer
        assert len(smtp_sink.messages) == 1
        db.expire_all()
        fresh = db.get(RecoveryAttempt, attempt.id)
        assert fresh is not None and fresh.retry_count == 1 and fresh.lease_owner is None
        db.commit()  # end the read: on SQLite an open read would block the app's next write
        # And the flash and the timeline say the same: sent
        html = admin_web.get(page).text
        assert "Reminder 1 of 3: email sent to ada@example.com." in html
        timeline = html.split('id="timeline"')[1]
        assert "Reminder 1 by email" in timeline
        assert '<span class="badge status-sent">sent</span>' in timeline
        assert "queued to go out now" not in timeline
        assert "handed to the worker" not in timeline
        assert "1 of 3 reminders went out" in html

    def test_embedded_with_the_smtp_server_down_says_it_failed(
        self, admin_web: TestClient, admin: Account, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given the embedded layout whose SMTP server refuses connections
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("SMTP_PORT", str(port))
        monkeypatch.setenv("SMTP_SECURITY", "none")
        get_settings.cache_clear()
        attempt = make_attempt(db, admin.organization, due=False)
        page = f"/dashboard/attempts/{attempt.id}"
        # When an admin clicks "Retry now"
        post_form(admin_web, page, f"{page}/retry-now", {})
        db.commit()
        html = admin_web.get(page).text
        # Then the flash says it did not go out and when it is tried again, as the timeline does
        flash = html.split('class="flash')[1].split("</div>")[0]
        assert "Reminder 1 of 3: email not sent: SMTP connection error" in flash
        retry_at = flash.split("It is tried again at ")[1].rstrip(".")
        timeline = html.split('id="timeline"')[1]
        assert '<span class="badge status-sent">' not in timeline
        assert '<span class="badge status-pending">pending</span>' in timeline
        scheduled = timeline.split("Reminder 1 of 3 scheduled")[1]
        assert retry_at in scheduled.split("</li>")[0]
        assert "0 of 3 reminders went out" in html

    def test_celery_hands_it_to_the_worker_and_the_timeline_says_so(
        self,
        admin_web: TestClient,
        admin: Account,
        db: Session,
        redis_url: str,
        smtp_sink: SmtpSink,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Given the Celery layout (Redis broker) and an attempt whose first reminder is an hour away
        monkeypatch.setenv("REDIS_URL", redis_url)
        get_settings.cache_clear()
        attempt = make_attempt(db, admin.organization, due=False)
        page = f"/dashboard/attempts/{attempt.id}"
        # When an admin clicks "Retry now"
        before = utc_now().replace(second=0, microsecond=0)
        response = post_form(admin_web, page, f"{page}/retry-now", {})
        assert response.status_code == 303
        # Then the step is claimed for the worker (the hand-over is recorded), nothing sent yet
        db.expire_all()
        fresh = db.get(RecoveryAttempt, attempt.id)
        assert fresh is not None and fresh.lease_owner is not None
        assert fresh.lease_owner.startswith("q:") and fresh.retry_count == 0
        claim = fresh.lease_owner
        db.commit()
        assert smtp_sink.messages == []
        # And the flash and the timeline both say it is in the worker's hands, since when
        html = admin_web.get(page).text
        assert "Reminder 1 of 3 handed to the worker at " in html
        timeline = html.split('id="timeline"')[1]
        assert "Reminder 1 of 3 handed to the worker" in timeline
        assert "queued; it shows as sent once the worker records it" in timeline
        assert "scheduled" not in timeline
        stamp = html.split("handed to the worker at ")[1].split(";")[0]
        assert datetime.strptime(stamp, "%d %b %Y, %H:%M UTC").replace(tzinfo=UTC) >= before
        assert stamp in timeline
        # When the worker runs the task it was handed
        send_recovery_notification(attempt.id, 0, claim)
        # Then the timeline shows the message sent, and the hand-over is over
        html = admin_web.get(page).text
        timeline = html.split('id="timeline"')[1]
        assert "Reminder 1 by email" in timeline
        assert '<span class="badge status-sent">sent</span>' in timeline
        assert "handed to the worker" not in timeline
        assert "Reminder 2 of 3 scheduled" in timeline
        assert len(smtp_sink.messages) == 1

    def test_a_finished_attempt_explains_why_not(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        attempt = make_attempt(db, admin.organization, due=False)
        page = f"/dashboard/attempts/{attempt.id}"
        token = csrf_from(admin_web.get(page).text)
        recovery_service.complete_attempt(db, attempt=attempt, paid_via="api")
        db.commit()
        response = admin_web.post(f"{page}/retry-now", data={"csrf_token": token})
        assert response.status_code == 200
        assert "attempt is completed: no reminder can be sent" in response.text
        assert 'id="retry-now"' not in response.text

    def test_an_analyst_sees_no_button_and_is_refused(
        self, analyst_web: TestClient, admin: Account, db: Session
    ) -> None:
        attempt = make_attempt(db, admin.organization, due=False)
        page = f"/dashboard/attempts/{attempt.id}"
        html = analyst_web.get(page).text
        assert 'id="retry-now"' not in html
        response = analyst_web.post(f"{page}/retry-now", data={"csrf_token": csrf_from(html)})
        assert response.status_code == 403
        db.expire_all()
        fresh = db.get(RecoveryAttempt, attempt.id)
        assert fresh is not None and fresh.next_retry_at == attempt.next_retry_at


_GOOD_POLICY = {
    "name": "Two emails then SMS",
    "max_retries": "3",
    "initial_delay_minutes": "30",
    "backoff_multiplier": "2",
    "max_delay_minutes": "600",
    "enabled_channels": ["email", "sms"],
}


class TestPolicies:
    def test_an_admin_creates_a_policy_that_becomes_active(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        response = post_form(admin_web, "/dashboard/policies", "/dashboard/policies", _GOOD_POLICY)
        assert response.status_code == 303
        policy = db.scalar(
            select(RetryPolicy).where(RetryPolicy.organization_id == admin.organization.id)
        )
        assert policy is not None and policy.is_active
        assert policy.enabled_channels == ["email", "sms"]
        db.commit()
        html = admin_web.get("/dashboard/policies").text
        assert "Two emails then SMS" in html and "now applies to new attempts" in html

    def test_a_bad_value_is_explained_next_to_its_field_and_nothing_is_saved(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        bad = {**_GOOD_POLICY, "max_retries": "11"}
        response = post_form(admin_web, "/dashboard/policies", "/dashboard/policies", bad)
        assert response.status_code == 422
        assert 'id="err-max_retries" role="alert">must be between 1 and 10<' in response.text
        assert 'value="Two emails then SMS"' in response.text  # the form keeps what was typed
        assert db.scalar(select(RetryPolicy.id)) is None

    def test_text_where_a_number_belongs_is_explained(self, admin_web: TestClient) -> None:
        bad = {**_GOOD_POLICY, "initial_delay_minutes": "soon", "enabled_channels": []}
        response = post_form(admin_web, "/dashboard/policies", "/dashboard/policies", bad)
        assert response.status_code == 422
        assert 'id="err-initial_delay_minutes" role="alert">must be a whole number<' in (
            response.text
        )

    def test_no_channel_is_explained(self, admin_web: TestClient) -> None:
        bad = {**_GOOD_POLICY, "enabled_channels": []}
        response = post_form(admin_web, "/dashboard/policies", "/dashboard/policies", bad)
        assert 'id="err-enabled_channels" role="alert">must name at least one channel<' in (
            response.text
        )

    def test_preview_lists_each_reminder_and_saves_nothing(
        self, analyst_web: TestClient, db: Session
    ) -> None:
        response = post_form(
            analyst_web, "/dashboard/policies", "/dashboard/policies/preview", _GOOD_POLICY
        )
        assert response.status_code == 200
        preview = response.text.split('id="schedule-preview"')[1]
        # 30 min, then 60, then 120: 30 min, 1 h 30 min, 3 h 30 min after the failure
        assert "<td>30 min</td><td>30 min</td>" in preview
        assert "<td>1 h</td><td>1 h 30 min</td>" in preview
        assert "<td>2 h</td><td>3 h 30 min</td>" in preview
        assert db.scalar(select(RetryPolicy.id)) is None

    def test_an_admin_creates_a_policy_with_a_send_window(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        # Given an admin filling the window: weekdays 09:00–20:00, not on holidays
        form = {
            **_GOOD_POLICY,
            "window_start": "09:00",
            "window_end": "20:00",
            "window_days": ["mon", "tue", "wed", "thu", "fri"],
            "window_skip_holidays": "1",
        }
        # When the policy is created
        response = post_form(admin_web, "/dashboard/policies", "/dashboard/policies", form)
        # Then it holds the window, and the list shows it
        assert response.status_code == 303
        policy = db.scalar(select(RetryPolicy))
        assert policy is not None and policy.send_window is not None
        assert (policy.window_start_minute, policy.window_end_minute) == (540, 1200)
        assert (policy.window_days, policy.window_skip_holidays) == (0b0011111, True)
        db.commit()
        html = admin_web.get("/dashboard/policies").text
        assert "09:00–20:00 mon–fri, not on holidays" in html

    def test_a_window_crossing_midnight_is_explained(self, admin_web: TestClient) -> None:
        form = {**_GOOD_POLICY, "window_start": "22:00", "window_end": "06:00"}
        response = post_form(admin_web, "/dashboard/policies", "/dashboard/policies", form)
        assert response.status_code == 422
        assert 'id="err-window_end" role="alert">must be after window_start' in response.text

    def test_an_admin_edits_the_window_of_a_policy(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        # Given a policy without a window
        post_form(admin_web, "/dashboard/policies", "/dashboard/policies", _GOOD_POLICY)
        policy = db.scalar(select(RetryPolicy))
        assert policy is not None
        db.commit()
        # When an admin opens it for editing and saves a window
        page = admin_web.get(f"/dashboard/policies/{policy.id}/edit")
        assert page.status_code == 200 and 'id="save-policy"' in page.text
        assert 'value="Two emails then SMS"' in page.text
        form = {
            **_GOOD_POLICY,
            "window_start": "08:00",
            "window_end": "18:30",
            "window_days": ["sat", "sun"],
        }
        url = f"/dashboard/policies/{policy.id}/edit"
        response = post_form(admin_web, f"/dashboard/policies/{policy.id}/edit", url, form)
        # Then the policy has it, on weekends, and stays active
        assert response.status_code == 303
        db.refresh(policy)
        assert (policy.window_start_minute, policy.window_end_minute) == (480, 1110)
        assert policy.window_days == 0b1100000
        assert policy.is_active

    def test_preview_shows_when_each_reminder_goes_in_the_customers_time(
        self, analyst_web: TestClient
    ) -> None:
        # Given numbers with a window that is closed for the next day's first hours anywhere
        form = {
            **_GOOD_POLICY,
            "window_start": "23:59",
            "window_end": "24:00",
            "window_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "preview_timezone": "Asia/Tokyo",
            "preview_country": "JP",
        }
        # When previewed for a customer in Tokyo
        response = post_form(
            analyst_web, "/dashboard/policies", "/dashboard/policies/preview", form
        )
        # Then every reminder goes at 23:59 Tokyo time, marked as moved into the window
        assert response.status_code == 200, response.text
        preview = response.text.split('id="schedule-preview"')[1]
        assert preview.count("23:59") >= 3
        assert "moved into the window" in preview and "Asia/Tokyo" in preview

    def test_preview_for_an_unknown_zone_is_explained(self, analyst_web: TestClient) -> None:
        form = {**_GOOD_POLICY, "preview_timezone": "Mars/Olympus"}
        response = post_form(
            analyst_web, "/dashboard/policies", "/dashboard/policies/preview", form
        )
        assert response.status_code == 422
        assert 'id="err-preview_timezone" role="alert">must be an IANA time zone' in response.text

    def test_an_admin_deactivates_and_activates(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        post_form(admin_web, "/dashboard/policies", "/dashboard/policies", _GOOD_POLICY)
        policy = db.scalar(select(RetryPolicy))
        assert policy is not None
        db.commit()
        post_form(
            admin_web, "/dashboard/policies", f"/dashboard/policies/{policy.id}/deactivate", {}
        )
        db.refresh(policy)
        assert policy.is_active is False
        db.commit()
        html = admin_web.get("/dashboard/policies").text
        assert "Default (no active policy)" in html
        post_form(admin_web, "/dashboard/policies", f"/dashboard/policies/{policy.id}/activate", {})
        db.refresh(policy)
        assert policy.is_active is True

    def test_an_analyst_sees_policies_read_only_and_is_refused_changes(
        self, analyst_web: TestClient, admin: Account, admin_web: TestClient, db: Session
    ) -> None:
        post_form(admin_web, "/dashboard/policies", "/dashboard/policies", _GOOD_POLICY)
        policy = db.scalar(select(RetryPolicy))
        assert policy is not None
        db.commit()
        html = analyst_web.get("/dashboard/policies").text
        assert "Two emails then SMS" in html
        assert "data-admin" not in html and 'id="create-policy"' not in html
        token = csrf_from(html)
        refused = [
            analyst_web.post("/dashboard/policies", data={"csrf_token": token, **_GOOD_POLICY}),
            analyst_web.post(
                f"/dashboard/policies/{policy.id}/deactivate", data={"csrf_token": token}
            ),
        ]
        assert [r.status_code for r in refused] == [403, 403]
        db.refresh(policy)
        assert policy.is_active is True
        assert len(db.scalars(select(RetryPolicy)).all()) == 1


class TestTeam:
    def test_an_admin_adds_a_user_who_can_then_log_in(
        self, admin_web: TestClient, admin: Account, db: Session
    ) -> None:
        response = post_form(
            admin_web,
            "/dashboard/team",
            "/dashboard/users",
            {
                "email": "New.Analyst@Example.com",
                "full_name": "New Analyst",
                "role": "analyst",
                "password": "a long enough password",
            },
        )
        assert response.status_code == 303
        user = db.scalar(select(User).where(User.email == "new.analyst@example.com"))
        assert user is not None and user.role == "analyst"
        assert user.organization_id == admin.organization.id

    def test_a_short_password_is_explained(self, admin_web: TestClient) -> None:
        response = post_form(
            admin_web,
            "/dashboard/team",
            "/dashboard/users",
            {"email": "x@example.com", "full_name": "", "role": "operator", "password": "short"},
        )
        assert response.status_code == 422
        assert "at least 10 characters" in response.text

    def test_an_api_key_is_shown_once_and_can_be_revoked(
        self, admin_web: TestClient, db: Session
    ) -> None:
        response = post_form(
            admin_web, "/dashboard/team", "/dashboard/api-keys", {"name": "billing-server"}
        )
        assert response.status_code == 200
        key = re.search(r'id="new-api-key">(sk_[^<]+)<', response.text)
        assert key is not None
        # It authenticates the API
        assert admin_web.get("/v1/auth/me", headers={"X-API-Key": key.group(1)}).json()["auth"] == (
            "api_key"
        )
        # And the next page shows it masked only
        assert key.group(1) not in admin_web.get("/dashboard/team").text
        api_key = db.scalar(select(ApiKey))
        assert api_key is not None
        db.commit()
        post_form(admin_web, "/dashboard/team", f"/dashboard/api-keys/{api_key.id}/revoke", {})
        db.refresh(api_key)
        assert api_key.revoked_at is not None

    def test_analysts_and_operators_are_refused_the_page_and_its_actions(
        self, analyst_web: TestClient, app, operator: Account
    ) -> None:  # type: ignore[no-untyped-def]
        from tests.support.web import web_login

        assert "Users &amp; API keys" not in analyst_web.get("/dashboard").text
        assert analyst_web.get("/dashboard/team").status_code == 403
        token = csrf_from(analyst_web.get("/dashboard").text)
        response = analyst_web.post(
            "/dashboard/api-keys", data={"csrf_token": token, "name": "sneaky"}
        )
        assert response.status_code == 403
        with TestClient(app) as operator_web:
            web_login(operator_web, operator.user.email)
            assert operator_web.get("/dashboard/team").status_code == 403
            assert "data-admin" not in operator_web.get("/dashboard").text
