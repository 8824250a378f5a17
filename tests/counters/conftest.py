"""Fixtures of the counter tests: the loopback SMTP sink; provider clients rebuilt per test."""

from __future__ import annotations

import pytest

from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _runtime_per_test(fresh_runtime: None) -> None:
    """Every test's engine sends through provider clients built for its own servers."""
