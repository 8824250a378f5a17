"""Fixtures of the Stripe tests: the fake Stripe server, an organization connected to it, the
loopback SMTP sink."""

from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)
from tests.support.stripe_events import stripe_org  # noqa: F401  (fixture)
from tests.support.stripe_server import stripe_server  # noqa: F401  (fixture)
