from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import Role
from tests.dashboard.helpers import web_login
from tests.factories import Account, make_account
from tests.support.smtp import smtp_sink  # noqa: F401


@pytest.fixture
def admin(db: Session) -> Account:
    return make_account(db, role=Role.admin)


@pytest.fixture
def analyst(db: Session, admin: Account) -> Account:
    return make_account(db, role=Role.analyst, organization=admin.organization)


@pytest.fixture
def operator(db: Session, admin: Account) -> Account:
    return make_account(db, role=Role.operator, organization=admin.organization)


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
