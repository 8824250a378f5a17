"""Fixtures of the webhook tests: the loopback receiver."""

from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)
from tests.support.webhook_receiver import receiver  # noqa: F401  (fixture)
