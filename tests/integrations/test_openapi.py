"""Schemathesis against the Stripe routes of the OpenAPI document: documented answers, no 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from tests.factories import make_account

STRIPE_ROUTES = r"^/v1/(integrations|webhooks)/stripe"
positive = schemathesis.openapi.from_asgi("/openapi.json", create_app()).include(
    path_regex=STRIPE_ROUTES
)
positive.config.generation.update(modes=[GenerationMode.POSITIVE])
negative = schemathesis.openapi.from_asgi("/openapi.json", create_app()).include(
    path_regex=STRIPE_ROUTES
)
negative.config.generation.update(modes=[GenerationMode.NEGATIVE])

_BOUNDED = settings(
    max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
# Key shapes are checked by the service (422 naming the field), not expressible in the schema.
_CONTRACT_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def admin_headers(db: Session) -> dict[str, str]:
    return make_account(db).headers


@positive.parametrize()
@_BOUNDED
def test_valid_requests_get_documented_answers(
    case: Any, db: Session, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(headers=admin_headers, checks=_CONTRACT_CHECKS)


@negative.parametrize()
@_BOUNDED
def test_invalid_requests_never_fail_the_server(
    case: Any, db: Session, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(headers=admin_headers, checks=[not_a_server_error])
