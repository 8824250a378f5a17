"""Schemathesis against the Stripe routes of the OpenAPI document: documented answers, no 5xx."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.support.builders import make_account
from tests.support.contract import CONTRACT_CHECKS, SERVER_ERROR_CHECKS, bounded, schemas_for

STRIPE_ROUTES = r"^/v1/(integrations|webhooks)/stripe"
positive, negative = schemas_for(STRIPE_ROUTES)
_BOUNDED = bounded(15)


@pytest.fixture
def admin_headers(db: Session) -> dict[str, str]:
    return make_account(db).headers


@positive.parametrize()
@_BOUNDED
def test_valid_requests_get_documented_answers(
    case: Any, db: Session, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(headers=admin_headers, checks=CONTRACT_CHECKS)


@negative.parametrize()
@_BOUNDED
def test_invalid_requests_never_fail_the_server(
    case: Any, db: Session, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(headers=admin_headers, checks=SERVER_ERROR_CHECKS)
