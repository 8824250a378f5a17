"""Schemathesis over the dashboard's pages and forms: whatever a browser (or anyone) sends to
them, valid or malformed, signed in as an admin with a valid CSRF token, no answer is a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.support.builders import make_account, make_attempt, make_policy
from tests.support.contract import SERVER_ERROR_CHECKS, bounded, dashboard_schemas
from tests.support.web import csrf_from, web_login

positive, negative = dashboard_schemas()


@pytest.fixture
def browser(db: Session, app: Any) -> dict[str, Any]:
    """A signed-in admin's cookies and form token, and rows for the pages to find."""
    account = make_account(db)
    make_policy(db, account.organization)
    make_attempt(db, account.organization, due=False)
    with TestClient(app) as client:
        web_login(client, account.user.email)
        token = csrf_from(client.get("/dashboard/policies").text)
        return {"cookies": dict(client.cookies), "csrf_token": token}


def _call(case: Any, browser: dict[str, Any]) -> None:
    if isinstance(case.body, dict):
        case.body.setdefault("csrf_token", browser["csrf_token"])
    case.call_and_validate(cookies=browser["cookies"], checks=SERVER_ERROR_CHECKS)


_BOUNDED = bounded(5)


@positive.parametrize()
@_BOUNDED
def test_valid_page_requests_and_forms_never_fail_the_server(
    case: Any, db: Session, browser: dict[str, Any]
) -> None:
    _call(case, browser)


@negative.parametrize()
@_BOUNDED
def test_malformed_page_requests_and_forms_never_fail_the_server(
    case: Any, db: Session, browser: dict[str, Any]
) -> None:
    _call(case, browser)
