"""Builders for failed-payment input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from stealth_recovery.auth.models import Role
from stealth_recovery.auth.service import create_api_key
from stealth_recovery.ingestion.service import FailureInput
from stealth_recovery.organizations.models import Organization


def failure_input(**overrides: Any) -> FailureInput:
    values: dict[str, Any] = {
        "external_ref": "inv_1001",
        "amount_minor": 4999,
        "currency": "EUR",
        "customer_email": "Jane.Doe@Example.com",
        "customer_phone": "+49 151 23456789",
        "customer_name": "Jane Doe",
        "customer_locale": "de-DE",
        "customer_timezone": "Europe/Berlin",
        "gateway": "stripe",
        "reason": "Your card has insufficient funds.",
        "decline_code": "insufficient_funds",
        "occurred_at": datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        "idempotency_key": None,
        "psp_customer_id": None,
        "psp_payment_id": None,
        "raw_metadata": {},
    }
    values.update(overrides)
    return FailureInput(**values)


def api_key_headers(session: Session, organization: Organization) -> dict[str, str]:
    """Headers carrying a fresh, committed API key of the organization."""
    _, plain = create_api_key(
        session, organization_id=organization.id, name="billing-server", created_by_id=None
    )
    session.commit()
    return {"X-API-Key": plain}


ROLES = ("admin", "analyst", "operator", "api_key")


def headers_for(session: Session, organization: Organization, role: str) -> dict[str, str]:
    """Credentials of the given role (or an API key) in an existing organization."""
    if role == "api_key":
        return api_key_headers(session, organization)
    from tests.support.builders import make_account

    return make_account(session, role=Role(role), organization=organization).headers
