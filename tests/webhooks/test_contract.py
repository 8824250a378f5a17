"""Schemathesis against /v1/webhook-endpoints: documented answers, and never a 5xx for bad
input. Every host name resolves to one public address here (a test DNS zone), so generated
URLs reach the service's own rules instead of the network."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.support.builders import make_account
from tests.support.contract import CONTRACT_CHECKS, SERVER_ERROR_CHECKS, bounded, schemas_for

schema, negative_schema = schemas_for(r"^/v1/webhook-endpoints")
_BOUNDED = bounded(10)
_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture
def admin_headers(db: Session, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return _real_getaddrinfo("93.184.216.34", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return make_account(db).headers


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
