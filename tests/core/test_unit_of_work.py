"""A request's unit of work commits before its response leaves the server."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from stealth_recovery.core.database import get_session_factory
from stealth_recovery.organizations.models import Organization
from tests.factories import PASSWORD
from tests.support.server import running_server


class TestCommitBeforeResponse:
    def test_a_created_row_is_readable_as_soon_as_the_201_arrives(self, db: Session) -> None:
        # Given the real app served over a socket
        with running_server() as base_url, httpx.Client(base_url=base_url) as client:
            for n in range(25):
                # When a client registers an organization
                response = client.post(
                    "/v1/auth/register",
                    json={
                        "organization_name": f"Race {n}",
                        "organization_slug": f"race-{n}",
                        "email": f"race{n}@example.com",
                        "password": PASSWORD,
                    },
                )
                assert response.status_code == 201, response.text
                # Then another connection sees it the moment the response is in
                with get_session_factory()() as reader:
                    found = reader.scalar(
                        select(Organization.id).where(Organization.slug == f"race-{n}")
                    )
                assert found == response.json()["organization"]["id"], f"not committed at {n}"
