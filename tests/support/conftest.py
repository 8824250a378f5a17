"""Fixtures of the loopback servers' own tests."""

from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)
from tests.support.stripe_server import stripe_server  # noqa: F401  (fixture)
