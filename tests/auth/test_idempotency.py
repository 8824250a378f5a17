"""`Idempotency-Key` on the API's POST routes: replay, refusal of another body, expiry, races."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier
from typing import Any

import httpx
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.auth.idempotency import IdempotencyKey, _needs_caller, uses_idempotency
from stealth_recovery.core.time import shifted_clock
from stealth_recovery.retry.models import RetryPolicy
from tests.support.builders import make_account
from tests.support.server import running_server

POLICY = {
    "name": "Gentle",
    "max_retries": 3,
    "initial_delay_minutes": 60,
    "backoff_multiplier": 2,
    "max_delay_minutes": 720,
    "enabled_channels": ["email"],
}


def _policies(db: Session) -> int:
    db.rollback()
    return int(db.scalar(select(func.count()).select_from(RetryPolicy)) or 0)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router
            yield from _api_routes(route.original_router.routes)


class TestIdempotencyKey:
    def test_same_key_and_body_replays_the_first_response(
        self, client: TestClient, db: Session
    ) -> None:
        # Given an admin who created a policy with a key
        admin = make_account(db)
        headers = {**admin.headers, "Idempotency-Key": "create-gentle-1"}
        first = client.post("/v1/retry/policies", json=POLICY, headers=headers)
        assert first.status_code == 201, first.text
        # When the same request is sent again, keys reordered
        again = client.post(
            "/v1/retry/policies", json=dict(reversed(POLICY.items())), headers=headers
        )
        # Then the first status and body come back and no second policy exists
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert _policies(db) == 1

    def test_same_key_with_another_body_is_a_422_that_says_so(
        self, client: TestClient, db: Session
    ) -> None:
        # Given a key already used for one policy
        admin = make_account(db)
        headers = {**admin.headers, "Idempotency-Key": "k-1"}
        assert client.post("/v1/retry/policies", json=POLICY, headers=headers).status_code == 201
        # When it is sent with another body
        response = client.post(
            "/v1/retry/policies", json={**POLICY, "name": "Firm"}, headers=headers
        )
        # Then the answer names the header and the rule, and nothing was created
        assert response.status_code == 422
        [problem] = response.json()["detail"]
        assert problem["field"] == "Idempotency-Key"
        assert "already used with another request" in problem["msg"]
        assert _policies(db) == 1

    def test_keys_are_per_organization(self, client: TestClient, db: Session) -> None:
        # Given two organizations sending the same key
        first, second = make_account(db), make_account(db)
        for account in (first, second):
            headers = {**account.headers, "Idempotency-Key": "shared"}
            response = client.post("/v1/retry/policies", json=POLICY, headers=headers)
            # Then each gets its own policy
            assert response.status_code == 201
            assert response.json()["org_id"] == account.organization.id
        assert _policies(db) == 2

    def test_a_key_lives_24_hours(self, client: TestClient, db: Session) -> None:
        # Given a key used a day and a minute ago
        admin = make_account(db)
        headers = {**admin.headers, "Idempotency-Key": "daily"}
        with shifted_clock(timedelta(hours=-24, minutes=-1)):
            assert (
                client.post("/v1/retry/policies", json=POLICY, headers=headers).status_code == 201
            )
        # When it is sent again, with another body
        response = client.post("/v1/retry/policies", json={**POLICY, "name": "B"}, headers=headers)
        # Then it is a new request
        assert response.status_code == 201
        assert response.json()["name"] == "B"
        assert _policies(db) == 2

    def test_a_refused_request_keeps_no_key(self, client: TestClient, db: Session) -> None:
        # Given a request refused by validation
        admin = make_account(db)
        headers = {**admin.headers, "Idempotency-Key": "retry-me"}
        bad = client.post("/v1/retry/policies", json={**POLICY, "max_retries": -1}, headers=headers)
        assert bad.status_code == 422
        # When the client fixes the body and sends the same key
        good = client.post("/v1/retry/policies", json=POLICY, headers=headers)
        # Then it runs
        assert good.status_code == 201
        assert db.scalar(select(func.count()).select_from(IdempotencyKey)) == 1

    def test_a_malformed_key_is_a_422_naming_the_header(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        for key in ("", "x" * 256, "has space"):
            response = client.post(
                "/v1/retry/policies", json=POLICY, headers={**admin.headers, "Idempotency-Key": key}
            )
            assert response.status_code == 422, key
            assert response.json()["detail"][0]["field"] == "Idempotency-Key"
        assert _policies(db) == 0

    def test_twenty_concurrent_identical_posts_give_one_object(self, db: Session) -> None:
        # Given an admin and a real server
        admin = make_account(db)
        headers = {**admin.headers, "Idempotency-Key": "burst"}
        barrier = Barrier(20)
        with running_server() as base, httpx.Client(base_url=base, timeout=30) as http:

            def post(_: int) -> httpx.Response:
                barrier.wait()
                return http.post("/v1/retry/policies", json=POLICY, headers=headers)

            # When 20 identical requests with one key arrive at once
            with ThreadPoolExecutor(20) as pool:
                responses = list(pool.map(post, range(20)))
        # Then every one answers 201 with the same policy, and one policy exists
        assert {r.status_code for r in responses} == {201}
        assert len({r.json()["id"] for r in responses}) == 1
        assert _policies(db) == 1

    def test_every_post_route_with_a_caller_takes_the_key(self, app: object) -> None:
        routes = [
            r
            for r in _api_routes(app.routes)  # type: ignore[attr-defined]
            if r.path.startswith("/v1") and "POST" in r.methods
        ]
        missing = [r.path for r in routes if _needs_caller(r.dependant) and not uses_idempotency(r)]
        assert missing == []
        assert sum(uses_idempotency(r) for r in routes) >= 8
