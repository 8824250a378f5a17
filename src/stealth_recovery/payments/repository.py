"""Transaction and failure-event queries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from stealth_recovery.core.database import (
    dialect_of,
    insert_for,
    insert_select_where,
    loading_returned,
    returned_row,
    typed_params,
)
from stealth_recovery.payments.models import FailureEvent, Transaction


def get_transaction_by_ref(
    session: Session, *, organization_id: int, external_ref: str
) -> Transaction | None:
    stmt = select(Transaction).where(
        Transaction.organization_id == organization_id, Transaction.external_ref == external_ref
    )
    return session.scalar(stmt)


def get_failure_by_key(
    session: Session, *, organization_id: int, idempotency_key: str
) -> FailureEvent | None:
    stmt = select(FailureEvent).where(
        FailureEvent.organization_id == organization_id,
        FailureEvent.idempotency_key == idempotency_key,
    )
    return session.scalar(stmt)


def upsert_transaction(
    session: Session,
    *,
    organization_id: int,
    external_ref: str,
    values: Mapping[str, Any],
    unless_failure_key: str,
    now: datetime,
) -> Transaction | None:
    """Insert the transaction, or update the organization's one with this reference; one
    statement, the row returned (no second read).

    `values` are the report's columns (amount, currency, contact, provider ids): the newest
    report is the best knowledge of them, but a None keeps what is stored. Nothing is written
    and None is returned when a failure with the idempotency key `unless_failure_key` is
    already recorded: a replayed report changes nothing. Concurrent reports of one reference
    settle on the unique `(organization_id, external_ref)`: the second updates the first's row
    (on PostgreSQL after waiting for its commit).
    """
    statement = _upsert_transaction_statement(dialect_of(session), tuple(values))
    params = {
        **values,
        "organization_id": organization_id,
        "external_ref": external_ref,
        "unless_failure_key": unless_failure_key,
        "created_at": now,
        "updated_at": now,
    }
    return returned_row(session, Transaction, statement, params)


@cache
def _upsert_transaction_statement(dialect: str, names: tuple[str, ...]) -> ExecutableReturnsRows:
    key_used = exists().where(
        FailureEvent.organization_id == bindparam("organization_id"),
        FailureEvent.idempotency_key == bindparam("unless_failure_key"),
    )
    columns = ("organization_id", "external_ref", *names, "created_at", "updated_at")
    statement = insert_select_where(dialect, Transaction, columns, ~key_used)
    table = Transaction.__table__.c
    kept_unless_given = {
        name: func.coalesce(statement.excluded[name], table[name]) for name in names
    }
    statement = statement.on_conflict_do_update(
        index_elements=["organization_id", "external_ref"],
        set_={**kept_unless_given, "updated_at": statement.excluded["updated_at"]},
        where=~key_used,
    )
    return loading_returned(Transaction, statement)


def insert_failure(session: Session, *, values: Mapping[str, Any]) -> FailureEvent | None:
    """Record a failure once per `(organization_id, idempotency_key)`; one statement, the row
    returned. None when the key is already recorded (a concurrent report of the same failure
    committed first; on PostgreSQL this waits for its commit).
    """
    statement = _insert_failure_statement(dialect_of(session), tuple(values))
    return returned_row(session, FailureEvent, statement, values)


@cache
def _insert_failure_statement(dialect: str, names: tuple[str, ...]) -> ExecutableReturnsRows:
    statement = (
        insert_for(dialect, FailureEvent)
        .values(typed_params(FailureEvent, names))
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
    )
    return loading_returned(FailureEvent, statement)
