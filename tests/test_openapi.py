"""Schemathesis against the app's own OpenAPI document: no 5xx, no response off the schema."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.support.builders import make_account, make_attempt, make_policy
from tests.support.contract import CONTRACT_CHECKS, SERVER_ERROR_CHECKS, bounded, schemas_for


@pytest.fixture
def admin_headers(db: Session) -> dict[str, str]:
    # Real rows to find: a policy, an attempt and its pay link, so cases reach past the 404s.
    account = make_account(db)
    make_policy(db, account.organization)
    make_attempt(db, account.organization)
    return account.headers


# The public API: auth, users and keys, ingestion, attempts, recoveries, retry, the pay page,
# and the providers' status callbacks (Stripe's routes have their own suite).
PUBLIC_API = (
    r"^/(v1/(auth|users|api-keys|retry|attempts|recoveries|events|webhooks/(twilio|whatsapp))"
    r"|pay)(/|$)"
)
# Malformed input (wrong types, broken JSON, missing fields) must never reach a 5xx either.
schema, negative_schema = schemas_for(PUBLIC_API)


class TestOpenApi:
    def test_document_has_examples_for_every_operation(self, app: Any) -> None:
        # Every operation in the document, not only the fuzzed ones.
        document = app.openapi()
        missing = []
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if set(operation["responses"]) & {"204"} and not any(
                    status.startswith("2") and status != "204" for status in operation["responses"]
                ):
                    continue  # nothing to give an example of
                ok = [
                    status
                    for status, response in operation["responses"].items()
                    if status.startswith("2") and _has_example(document, response)
                ]
                if not ok:
                    missing.append(f"{method.upper()} {path}")
        assert missing == []

    def test_ingestion_documents_the_shed_answer(self, app: Any) -> None:
        # The 503 the load-shedding middleware answers when no slot frees within a second
        responses = app.openapi()["paths"]["/v1/events/payment_failed"]["post"]["responses"]
        busy = responses["503"]
        assert busy["headers"]["Retry-After"]["schema"]["type"] == "integer"
        media = busy["content"]["application/json"]
        assert media["schema"]["$ref"].endswith("/ErrorOut")
        assert media["example"]["type"] == "service_busy"


def _has_example(document: dict[str, Any], response: dict[str, Any]) -> bool:
    for media in response.get("content", {}).values():
        if "example" in media or "examples" in media:
            return True
        ref = media.get("schema", {}).get("$ref") or media.get("schema", {}).get("items", {}).get(
            "$ref"
        )
        if ref:
            name = ref.rsplit("/", 1)[-1]
            if "examples" in document["components"]["schemas"][name]:
                return True
    return False


_BOUNDED = bounded(10)


@schema.parametrize()
@_BOUNDED
def test_valid_requests_get_documented_answers(
    case: Any, db: Session, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(headers=admin_headers, checks=CONTRACT_CHECKS)


@negative_schema.parametrize()
@_BOUNDED
def test_invalid_requests_never_fail_the_server(
    case: Any, db: Session, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(headers=admin_headers, checks=SERVER_ERROR_CHECKS)
