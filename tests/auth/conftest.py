"""Fixtures of the auth tests: the loopback SMTP server that receives reset links."""

from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)
