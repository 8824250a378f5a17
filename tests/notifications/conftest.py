"""Fixtures of the notification tests: the SMTP sink, the fake providers, message contexts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications.types import MessageContext
from tests.support.providers import fake_providers, live_webhooks  # noqa: F401  (fixtures)
from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)

PAY_URL = "https://pay.example.test/pay/q3Vb0zJmZkS1uN8pYtXo7wR4eLcA9hGd2fKsM6iUjQe"


def message_context(**overrides: Any) -> MessageContext:
    """A reminder as the engine hands it over: Ana, €49.99 to Acme, expiring 5 Dec 15:00 UTC."""
    base = MessageContext(
        log_id=101,
        attempt_id=11,
        organization_id=1,
        retry_number=0,
        max_retries=3,
        channel="email",
        recipient="ana@example.test",
        locale="en",
        timezone="America/New_York",
        merchant_name="Acme Outdoor",
        customer_name="Ana Pérez",
        amount_minor=4999,
        currency="EUR",
        pay_url=PAY_URL,
        expires_at=datetime(2026, 12, 5, 15, 0, tzinfo=UTC),
        decline_category="soft",
    )
    return replace(base, **overrides)


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests change settings through the environment: never leak them to the next test."""
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()
