"""No input gets a 500: every path parameter of every route, crafted cursors, signed webhooks
with absurd values, and the dashboard's forms held to the API's limits."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from stealth_recovery.retry.models import RetryPolicy
from tests.support.builders import Account, api_key_headers, make_account
from tests.support.web import post_form, web_login

# What a path parameter can be made to carry: NUL, integers past 64 bits, negative, huge text,
# traversal, percent-escapes, other scripts and emoji, a lone surrogate's UTF-8 escape.
CRAFTED = [
    "%00",
    "a%00b",
    "99999999999999999999999",
    "9223372036854775808",
    "2147483648",
    "-1",
    "0",
    "x" * 5000,
    "..%2F..%2Fetc",
    "%25",
    "%ED%A0%80",
    "%F0%9F%92%B3",
    "1e309",
    "NaN",
]


def _walk(routes: list[Any]) -> list[tuple[str, str]]:
    found = []
    for route in routes:
        nested = getattr(route, "effective_candidates", None)  # an included router
        if nested is not None:
            found += _walk(nested())
            continue
        path, methods = getattr(route, "path", ""), getattr(route, "methods", None) or set()
        if "{" in path:
            found += [(method, path) for method in sorted(methods - {"HEAD"})]
    return found


def _routes() -> list[tuple[str, str]]:
    routes = _walk(create_app().routes)
    assert len(routes) > 15, "the route walk should find every route with a path parameter"
    return routes


def _fill(path: str, value: str) -> str:
    out, rest = "", path
    while "{" in rest:
        head, _, tail = rest.partition("{")
        _, _, rest = tail.partition("}")
        out += head + value
    return out + rest


@pytest.fixture
def signed_in(db: Session, client: TestClient) -> Account:
    account = make_account(db)
    web_login(client, account.user.email)
    return account


@pytest.mark.parametrize(("method", "path"), _routes(), ids=lambda v: str(v))
def test_every_path_parameter_of_every_route_answers_4xx_or_less(
    client: TestClient, signed_in: Account, method: str, path: str
) -> None:
    # Given a signed-in admin (bearer and dashboard cookie), so requests get past the auth
    failures = []
    for value in CRAFTED:
        url = _fill(path, value)
        response = client.request(
            method, url, headers=signed_in.headers, follow_redirects=False, json={}
        )
        if response.status_code >= 500:
            failures.append((url[:80], response.status_code))
    assert failures == []


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


class TestCursor:
    @pytest.mark.parametrize(
        "value",
        [
            ["2026-01-01T00:00:00+00:00", 99999999999999999999],
            ["2026-01-01T00:00:00+00:00", True],
            ["0001-01-01T00:00:00+14:00", 1],
            ["9999-12-31T23:59:59-14:00", 1],
            ["2026-01-01T00:00:00", 1],
            [None, None],
            {"a": 1},
        ],
        ids=["huge-id", "bool-id", "before-year-1", "after-9999", "naive", "nulls", "object"],
    )
    def test_a_crafted_cursor_is_a_422_naming_the_cursor(
        self, client: TestClient, db: Session, value: Any
    ) -> None:
        headers = make_account(db).headers
        response = client.get("/v1/attempts", params={"cursor": _cursor(value)}, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"] == "cursor"


_POLICY = {
    "name": "Huge",
    "max_retries": "3",
    "initial_delay_minutes": "60",
    "backoff_multiplier": "2",
    "max_delay_minutes": "1440",
    "enabled_channels": ["email"],
}
_FAILURE = {
    "transaction_ref": "inv_after_policy",
    "amount_minor": 4900,
    "currency": "EUR",
    "customer_email": "jane@example.com",
    "occurred_at": "2026-11-01T12:00:00Z",
}


class TestPolicyForm:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("initial_delay_minutes", "99999999999999"),
            ("max_delay_minutes", "99999999999999"),
            ("max_delay_minutes", "525601"),
            ("backoff_multiplier", "1e300"),
            ("backoff_multiplier", "101"),
            ("name", "x" * 129),
        ],
    )
    def test_the_form_refuses_what_the_api_refuses_and_ingestion_keeps_working(
        self, client: TestClient, db: Session, signed_in: Account, field: str, value: str
    ) -> None:
        # Given the API refuses the value
        api = client.post(
            "/v1/retry/policies",
            json={**_POLICY, field: value if field == "name" else float(value)},
            headers=signed_in.headers,
        )
        assert api.status_code == 422
        # When an admin submits it through the dashboard's form
        response = post_form(
            client, "/dashboard/policies", "/dashboard/policies", {**_POLICY, field: value}
        )
        # Then the form refuses it too, next to its field, and nothing is stored
        assert response.status_code == 422
        assert f'id="err-{field}"' in response.text
        db.rollback()
        assert db.scalar(select(func.count()).select_from(RetryPolicy)) == 0
        # And the organization's failed payments are still taken in
        headers = api_key_headers(db, signed_in.organization)
        ingest = client.post("/v1/events/payment_failed", json=_FAILURE, headers=headers)
        assert ingest.status_code == 201, ingest.text

    def test_the_largest_values_the_api_takes_are_taken_and_ingestion_works(
        self, client: TestClient, db: Session, signed_in: Account
    ) -> None:
        biggest = {
            **_POLICY,
            "max_retries": "10",
            "initial_delay_minutes": "525600",
            "backoff_multiplier": "100",
            "max_delay_minutes": "525600",
        }
        response = post_form(client, "/dashboard/policies", "/dashboard/policies", biggest)
        assert response.status_code == 303, response.text
        headers = api_key_headers(db, signed_in.organization)
        ingest = client.post("/v1/events/payment_failed", json=_FAILURE, headers=headers)
        assert ingest.status_code == 201, ingest.text


class TestDashboardUrlsAndForms:
    @pytest.mark.parametrize(
        "path",
        [
            "/dashboard/attempts/99999999999999999999",
            "/dashboard/attempts/0",
            "/dashboard/attempts?page=99999999999999999999",
            "/dashboard/attempts?page=0",
        ],
    )
    def test_an_impossible_number_in_a_url_is_a_page_not_a_500(
        self, client: TestClient, signed_in: Account, path: str
    ) -> None:
        response = client.get(path)
        assert response.status_code in (404, 422)
        assert response.headers["content-type"].startswith("text/html")

    @pytest.mark.parametrize(
        ("action", "page", "data"),
        [
            (
                "/dashboard/users",
                "/dashboard/team",
                {
                    "email": "a@example.com",
                    "role": "analyst",
                    "password": "long enough pass",
                    "full_name": "x" * 201,
                },
            ),
            (
                "/dashboard/users",
                "/dashboard/team",
                {
                    "email": "a@example.com",
                    "role": "analyst",
                    "password": "long enough pass",
                    "full_name": "Ada\x00",
                },
            ),
            ("/dashboard/api-keys", "/dashboard/team", {"name": "key\x00"}),
            ("/dashboard/policies", "/dashboard/policies", {**_POLICY, "name": "a\x00b"}),
            (
                "/dashboard/login",
                "/dashboard/login",
                {"email": "a\x00@example.com", "password": "x"},
            ),
        ],
        ids=["long-full-name", "nul-full-name", "nul-key-name", "nul-policy-name", "nul-login"],
    )
    def test_a_form_value_the_database_cannot_hold_is_a_4xx(
        self, client: TestClient, signed_in: Account, action: str, page: str, data: dict[str, Any]
    ) -> None:
        response = post_form(client, page, action, data)
        assert 400 <= response.status_code < 500, response.text


def test_a_form_token_with_non_ascii_characters_is_a_403(client: TestClient) -> None:
    client.get("/dashboard/login")  # the browser's CSRF nonce cookie
    response = client.post("/dashboard/login", data={"csrf_token": "\u0080", "email": "a@b.c"})
    assert response.status_code == 403
