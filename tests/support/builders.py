"""Small helpers that build real rows (and log in through the real API)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.auth import service as auth_service
from stealth_recovery.auth.models import Role, User
from stealth_recovery.core.time import utc_now
from stealth_recovery.organizations.models import Organization
from stealth_recovery.payments.models import FailureEvent, Transaction
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.recovery.service import open_attempt
from stealth_recovery.retry.models import RetryPolicy
from stealth_recovery.retry.policy import create_policy, effective_policy

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


@dataclass
class Account:
    organization: Organization
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_account(
    session: Session, *, role: Role = Role.admin, organization: Organization | None = None
) -> Account:
    """An organization (new unless given) with one committed user of the given role."""
    n = next(_counter)
    if organization is None:
        organization, user = auth_service.register(
            session,
            organization_name=f"Org {n}",
            organization_slug=f"org-{n}",
            email=f"admin{n}@example.com",
            password=PASSWORD,
            full_name=f"Admin {n}",
        )
        if role != Role.admin:
            user = auth_service.create_user(
                session,
                organization_id=organization.id,
                email=f"{role.value}{n}@example.com",
                password=PASSWORD,
                role=role,
                full_name=None,
            )
    else:
        user = auth_service.create_user(
            session,
            organization_id=organization.id,
            email=f"{role.value}{n}@example.com",
            password=PASSWORD,
            role=role,
            full_name=None,
        )
    session.commit()
    token, _ = auth_service.issue_token(user)
    return Account(organization=organization, user=user, token=token)


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def make_attempt(
    session: Session,
    organization: Organization,
    *,
    email: str | None = "customer@example.com",
    phone: str | None = None,
    amount_minor: int = 4999,
    currency: str = "EUR",
    locale: str = "en",
    due: bool = True,
    ref: str | None = None,
) -> RecoveryAttempt:
    """A committed transaction with a failure and an open attempt (due now unless `due=False`)."""
    n = next(_counter)
    transaction = Transaction(
        organization_id=organization.id,
        external_ref=ref or f"txn_{n}",
        amount_minor=amount_minor,
        currency=currency,
        customer_email=email,
        customer_phone=phone,
        customer_name=f"Customer {n}",
        customer_locale=locale,
        customer_timezone="Europe/Madrid",
    )
    session.add(transaction)
    session.flush()
    failure = FailureEvent(
        organization_id=organization.id,
        transaction_id=transaction.id,
        idempotency_key=f"failure-{n}",
        gateway="test",
        reason="insufficient funds",
        decline_code="insufficient_funds",
        raw_metadata={},
        occurred_at=utc_now(),
    )
    session.add(failure)
    session.flush()
    attempt = open_attempt(
        session,
        transaction=transaction,
        failure=failure,
        policy=effective_policy(session, organization_id=organization.id),
    ).attempt
    if due:
        attempt.next_retry_at = utc_now() - timedelta(seconds=1)
    session.commit()
    return attempt


def make_policy(session: Session, organization: Organization, **overrides: Any) -> RetryPolicy:
    values: dict[str, Any] = {
        "name": "Test policy",
        "max_retries": 3,
        "initial_delay_minutes": 60,
        "backoff_multiplier": 2.0,
        "max_delay_minutes": 1440,
        "enabled_channels": ["email"],
    }
    values.update(overrides)
    policy = create_policy(session, organization_id=organization.id, **values)
    session.commit()
    return policy
