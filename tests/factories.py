"""Small helpers that build real rows (and log in through the real API)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.auth import service as auth_service
from stealth_recovery.auth.models import Role, User
from stealth_recovery.organizations.models import Organization

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
