"""Fixtures of the dashboard tests: browser-like clients logged in through the login form."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support.builders import Account
from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)
from tests.support.web import web_login


@pytest.fixture
def admin_web(app, admin: Account) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A browser-like client logged in to the dashboard as the admin."""
    with TestClient(app) as client:
        web_login(client, admin.user.email)
        yield client


@pytest.fixture
def analyst_web(app, analyst: Account) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        web_login(client, analyst.user.email)
        yield client
