"""Fixtures of the notification tests: the SMTP sink, the fake providers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stealth_recovery.core.settings import get_settings
from tests.support.providers import fake_providers, live_webhooks  # noqa: F401  (fixtures)
from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests change settings through the environment: never leak them to the next test."""
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()
