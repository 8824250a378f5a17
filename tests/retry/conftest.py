from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.smtp import smtp_sink  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    """Provider clients are rebuilt for each test, which points them at its own servers."""
    from stealth_recovery.retry.runtime import reset_runtime

    reset_runtime()
    yield
    reset_runtime()
