"""The dashboard's webhook pages: add an endpoint (secret shown once), the delivery log with
replay, the notice of an endpoint disabled for failing."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from stealth_recovery.core.time import shifted_clock
from stealth_recovery.webhooks.delivery import deliver_due
from stealth_recovery.webhooks.models import WebhookDelivery
from tests.support.builders import Account, make_attempt
from tests.support.web import csrf_from, post_form
from tests.support.webhook_receiver import WebhookReceiver, receiver  # noqa: F401


class TestWebhookPages:
    def test_add_an_endpoint_see_its_deliveries_and_replay_one(
        self,
        admin_web: TestClient,
        admin: Account,
        db: Session,
        receiver: WebhookReceiver,  # noqa: F811
    ) -> None:
        # Given an admin who adds an endpoint through the form
        response = post_form(
            admin_web,
            "/dashboard/webhooks",
            "/dashboard/webhooks",
            {"url": receiver.url, "event_types": ["attempt.opened"]},
        )
        assert response.status_code == 200, response.text
        secret = re.search(r'id="new-webhook-secret">(whsec_[^<]+)<', response.text)
        assert secret is not None
        # When an attempt opens and a pass delivers it
        make_attempt(db, admin.organization)
        deliver_due()
        [request] = receiver.wait_for(1)
        Webhook(secret.group(1)).verify(request.body, request.headers)
        # Then the endpoint's page lists the delivery with its try, and never the secret again
        delivery = db.scalar(select(WebhookDelivery))
        assert delivery is not None
        page = admin_web.get(f"/dashboard/webhooks/{delivery.endpoint_id}")
        assert page.status_code == 200
        assert "attempt.opened" in page.text
        assert request.webhook_id in page.text
        assert secret.group(1) not in page.text
        # And replay queues the event again
        replayed = post_form(
            admin_web,
            f"/dashboard/webhooks/{delivery.endpoint_id}",
            f"/dashboard/webhooks/{delivery.endpoint_id}/deliveries/{delivery.id}/replay",
            {},
        )
        assert replayed.status_code == 303
        deliver_due()
        assert [r.webhook_id for r in receiver.wait_for(2)] == [request.webhook_id] * 2

    def test_an_unsafe_url_is_refused_with_the_rule(self, admin_web: TestClient) -> None:
        response = post_form(
            admin_web,
            "/dashboard/webhooks",
            "/dashboard/webhooks",
            {"url": "http://169.254.169.254/latest"},
        )
        assert response.status_code == 422
        assert "link-local" in response.text

    def test_a_disabled_endpoint_shows_a_notice(
        self,
        admin_web: TestClient,
        admin: Account,
        db: Session,
        receiver: WebhookReceiver,  # noqa: F811
    ) -> None:
        # Given an endpoint whose deliveries have failed for three days
        post_form(admin_web, "/dashboard/webhooks", "/dashboard/webhooks", {"url": receiver.url})
        receiver.script(*([500] * 10))
        make_attempt(db, admin.organization)
        deliver_due()
        with shifted_clock(timedelta(hours=73)):
            make_attempt(db, admin.organization)
            deliver_due()
        # Then the list page says it is disabled and why
        page = admin_web.get("/dashboard/webhooks")
        assert "is disabled." in page.text
        assert "every delivery failed for 72 hours" in page.text

    def test_analysts_see_the_pages_but_cannot_add(
        self, analyst_web: TestClient, db: Session
    ) -> None:
        assert analyst_web.get("/dashboard/webhooks").status_code == 200
        token = csrf_from(analyst_web.get("/dashboard").text)
        response = analyst_web.post(
            "/dashboard/webhooks", data={"csrf_token": token, "url": "https://a.example.com"}
        )
        assert response.status_code == 403
