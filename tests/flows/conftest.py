"""Fixtures of the end-to-end flows: every loopback server (SMTP, Twilio and WhatsApp, Stripe),
an organization connected to the fake Stripe account, provider clients rebuilt per test."""

from __future__ import annotations

import pytest

from tests.support.providers import fake_providers, live_webhooks  # noqa: F401  (fixtures)
from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)
from tests.support.stripe_events import stripe_org  # noqa: F401  (fixture)
from tests.support.stripe_server import stripe_server  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _runtime_per_test(fresh_runtime: None) -> None:
    """Every flow's engine sends through provider clients built for its own servers."""
